"""The widget audio demo of notebook 06: pick, upload or synthesize a clip, see its units, predict with a
run's trained prompts, and hear the units back through :mod:`spkit.vocoder`.

Logic lives here; the notebook only builds :class:`DemoApp` and displays it. Pieces usable without widgets:

* :func:`prompt_catalog` -- every ``RUN/prompts/<task>/<method>/seed<N>/prompt.pt`` with its verbalizer;
* :class:`DemoSession` -- caches one :class:`spkit.prompt.predict.Predictor` per prompt and analyses a
  16 kHz waveform: per-frame units (20 ms), deduplicated units, the prediction and its latency;
* :func:`test_clips`, :func:`wave_from_upload`, :func:`synthesize_clip` -- the three sources of a clip;
* :func:`probability_figure` -- class probabilities as plotly bars.

All waveforms are mono ``(samples,)`` float32 tensors at 16 kHz.

In an oracle-topline run (units = the synthesizer's phone labels, :mod:`spkit.units.oracle`) only the corpus's
test clips have units (their alignment gives them); the app says so above its widgets, and an uploaded or
synthesized clip gets that message in place of a prediction.
"""

from __future__ import annotations

import html
import io
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from spkit import viz
from spkit.artifacts import prompt_files
from spkit.audio import SAMPLE_RATE, AudioError, audio_info, load_audio, trim_silence
from spkit.errors import UserError
from spkit.io import read_json
from spkit.layout import RunLayout
from spkit.prompt.checkpoint import PromptFileError, read_prompt_file
from spkit.prompt.predict import Predictor
from spkit.synth import synthesize_phrase
from spkit.synth.espeak import usable_variants
from spkit.synth.speakers import partition_variants
from spkit.units.encoder import SpeechEncoder
from spkit.units.oracle import ORACLE_KIND, ORACLE_LABEL
from spkit.units.quantize import read_records
from spkit.vocoder import expected_frames

DEFAULT_PHRASE = "turn on the lights in the kitchen"
ORACLE_NOTE = (f"<b>{html.escape(ORACLE_LABEL)}</b>: this run's units are the synthesizer's phone labels of "
               "its corpus clips, not the output of a speech model. Test clips work; an uploaded or newly "
               "synthesized clip has no alignment, so it gets no oracle units and no prediction.")


class DemoError(UserError, ValueError):
    """The run folder cannot drive the demo (no units, no prompts...); the message says what is missing."""


# --------------------------------------------------------------------------------------------
# What the run holds
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptEntry:
    """One trained prompt file of a run."""

    task: str
    method: str
    seed: int
    verbalizer: str
    path: Path


def prompt_catalog(run: str | os.PathLike) -> list[PromptEntry]:
    """Every prompt file of the run (:func:`spkit.artifacts.prompt_files`) with its verbalizer kind (read from
    the file), sorted by task, method, verbalizer and seed. Unreadable files are left out (they cannot be
    predicted with)."""
    out = []
    for f in prompt_files(run):
        try:
            verb = str(read_prompt_file(f.path)["verbalizer"].get("kind", "?"))
        except (PromptFileError, AttributeError):
            continue
        out.append(PromptEntry(f.task, f.method, f.seed, verb, f.path))
    return sorted(out, key=lambda e: (e.task, e.method, e.verbalizer, e.seed))


@dataclass(frozen=True)
class Clip:
    """A test clip of the run: ``uid``, its audio ``path`` and reference ``label`` (or transcript)."""

    uid: str
    path: Path
    label: str

    @property
    def caption(self) -> str:
        return f"{self.uid} ({self.label})"


def test_clips(run: str | os.PathLike, corpus: str, limit: int = 40) -> list[Clip]:
    """Up to ``limit`` clips of ``RUN/units/<corpus>/test.jsonl``, taken round-robin over labels (so a short
    list still shows every class), in file order within a label.

    Only records whose audio file exists and holds exactly the clip (its length matches ``n_frames``) are
    offered: a record cut from a longer file (Speech Commands' ``_silence_`` slices of the noise files) does
    not keep its offset, so it cannot be played or re-analysed faithfully.
    """
    path = RunLayout.at(run).unit_dir(corpus) / "test.jsonl"
    if not path.is_file():
        raise DemoError(f"{path}: no test split of corpus {corpus!r} in the run (run notebook 01 first)")
    by_label: dict[str, list[Clip]] = {}
    for r in read_records(path):
        label = r.get("label")
        if isinstance(label, Mapping):  # intent labels are slot dicts: show the transcript instead
            label = r.get("text") or " ".join(f"{k}={v}" for k, v in label.items())
        if label is None:
            label = r.get("text") or "?"
        try:
            info = audio_info(r["path"])
        except AudioError:
            continue
        n = expected_frames(round(info.frames * SAMPLE_RATE / info.samplerate))
        if r.get("n_frames") is not None and abs(n - int(r["n_frames"])) > 1:
            continue
        by_label.setdefault(str(label), []).append(Clip(r["uid"], Path(r["path"]), str(label)))
    clips: list[Clip] = []
    queues = list(by_label.values())
    while queues and len(clips) < limit:
        clips += [q.pop(0) for q in queues][: limit - len(clips)]
        queues = [q for q in queues if q]
    return clips


def wave_from_upload(data: bytes | memoryview, name: str = "upload.wav", trim: bool = True) -> Any:
    """Decode uploaded audio bytes (WAV/FLAC, any rate, stereo downmixed) to ``(samples,)`` at 16 kHz.

    ``trim``: cut long leading and trailing silence (a recording started early or stopped late), keeping
    0.2 s of it on each side (:func:`spkit.audio.trim_silence`, librosa's), so the units and the figure show
    the speech. Raises :class:`spkit.audio.AudioError` naming the uploaded file when it is not usable audio.
    """
    suffix = Path(name).suffix.lower() or ".wav"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(bytes(data))
        try:
            wave = load_audio(path)
        except AudioError as e:
            raise AudioError(name, e.problem) from None
    return trim_silence(wave) if trim else wave


def demo_voices(n: int = 12) -> list[str]:
    """Voice names (``en-us+<variant>``) from the synthesizer's *test* pool of variants: speakers the
    corpora's training splits never used. Falls back to plain ``en-us`` when espeak-ng has no variants."""
    try:
        pool = partition_variants(usable_variants())["test"]
    except (OSError, ValueError):
        pool = []
    return [f"en-us+{v}" for v in pool[:n]] or ["en-us"]


def synthesize_clip(text: str, voice: str = "en-us") -> Any:
    """``text`` spoken by espeak-ng ``voice`` (``lang`` or ``lang+variant``), ``(samples,)`` at 16 kHz."""

    if not text.strip():
        raise DemoError("nothing to synthesize: the phrase is empty")
    lang, _, variant = voice.partition("+")
    return torch.from_numpy(synthesize_phrase(text, voice=lang, variant=variant or None))


def wav_bytes(wave: Any, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 16-bit WAV file in memory, for ``ipywidgets.Audio`` (``(samples,)`` float in [-1, 1])."""
    buf = io.BytesIO()
    data = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)
    sf.write(buf, data, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------

@dataclass
class Analysis:
    """What the demo shows for one clip under one prompt.

    Attributes:
        wave: ``(samples,)`` float32 at 16 kHz.
        frame_units: one unit per 20 ms frame (what :func:`spkit.viz.waveform_units_figure` draws).
        units: deduplicated units (the uLM's input); durations: frames per deduplicated unit.
        label, scores: the prediction (``scores`` None for ASR).
        predict_ms: wall time of the prediction alone (units + prompted uLM), milliseconds.
        path: the clip's file when it has one (a test clip; the oracle topline's units need it).
    """

    name: str
    wave: Any
    frame_units: list[int]
    units: list[int]
    durations: list[int]
    entry: PromptEntry | None
    label: str | None = None
    scores: dict[str, float] | None = None
    predict_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    path: str | None = None


class DemoSession:
    """One run's prompts and unit model, loaded lazily and kept: a :class:`Predictor` per prompt file.

    Without any prompt file in the run, :meth:`analyse` still gives units (from the run's own unit model)
    and leaves the prediction empty.
    """

    def __init__(self, run: str | os.PathLike, device: str = "cpu"):
        self.layout = RunLayout.at(run)
        if not self.layout.units.is_dir():
            raise DemoError(f"{self.layout.units}: no units in the run (run notebooks 01-02 first)")
        self.device = device
        self.catalog = prompt_catalog(self.layout.root)
        self._predictors: dict[tuple[str, str, int], Predictor] = {}
        self._encoder: SpeechEncoder | None = None

    def tasks(self) -> list[str]:
        return sorted({e.task for e in self.catalog})

    def find(self, task: str, method: str | None = None, verbalizer: str | None = None,
             seed: int | None = None) -> PromptEntry:
        """The first catalog entry matching every given field."""
        for e in self.catalog:
            if (e.task == task and method in (None, e.method) and verbalizer in (None, e.verbalizer)
                    and seed in (None, e.seed)):
                return e
        raise DemoError(f"{self.layout.root / 'prompts'}: no prompt for task={task} method={method} "
                        f"verbalizer={verbalizer} seed={seed}")

    def predictor(self, entry: PromptEntry) -> Predictor:
        """The (cached) Predictor of ``entry``."""
        key = (entry.task, entry.method, entry.seed)
        if key not in self._predictors:
            self._predictors[key] = Predictor(self.layout.root, entry.task, entry.method, entry.seed,
                                              device=self.device)
        return self._predictors[key]

    def encoder(self) -> SpeechEncoder:
        """The run's :class:`SpeechEncoder`: a loaded predictor's (all prompts of a run share the unit model),
        else the run's own (notebook 01's record)."""
        if self._predictors:
            return next(iter(self._predictors.values())).encoder
        if self._encoder is None:
            self._encoder = SpeechEncoder.from_run(self.layout.root, device=self.device)
        return self._encoder

    def analyse(self, wave: Any, entry: PromptEntry | None, name: str = "<wave>",
                path: str | os.PathLike | None = None) -> Analysis:
        """Units and (with ``entry``) the prediction for one clip; ``path``: its file, when it has one (an
        oracle run's units come from the file's alignment; without one its encoder raises
        :class:`spkit.units.oracle.OracleUnitsError`, saying why)."""
        wave = torch.as_tensor(wave, dtype=torch.float32)
        path = None if path is None else str(path)
        pred = None
        if entry is not None:
            predictor = self.predictor(entry)
            t0 = time.perf_counter()
            pred = predictor.predict_wave(wave, name, path)
            ms = 1e3 * (time.perf_counter() - t0)
        enc = self.encoder().encode(wave, path=path)
        frames, units, durations = enc.frame_units.tolist(), enc.units.tolist(), enc.durations.tolist()
        if pred is None:
            return Analysis(name, wave, frames, units, durations, None, path=path)
        return Analysis(name, wave, frames, units, durations, entry, pred.label, pred.scores, ms, path=path)

    @property
    def oracle(self) -> bool:
        """Whether the run's units are the oracle topline's (they need a corpus clip's alignment)."""
        record = self.layout.units / "unit_model.json"
        return record.is_file() and read_json(record).get("kind") == ORACLE_KIND


def probability_figure(scores: Mapping[str, float], title: str = "", highlight: str | None = None) -> Any:
    """Horizontal plotly bars of class probabilities, most likely on top; ``highlight``: the reference."""
    import plotly.graph_objects as go

    items = sorted(scores.items(), key=lambda kv: kv[1])
    colors = ["#d62728" if k == highlight else "#1f77b4" for k, _ in items]
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color=colors, text=[f"{v:.2f}" for _, v in items], textposition="auto"))
    fig.update_layout(title=title, xaxis={"title": "probability", "range": [0, 1]},
                      height=max(260, 22 * len(items) + 100), margin={"l": 10, "r": 10, "t": 40, "b": 40})
    return fig


def templates_figure(vocoder: Any, title: str = "unit templates: mean log magnitude per unit") -> Any:
    """Heatmap of a :class:`spkit.vocoder.UnitVocoder`'s templates: units on x, frequency (Hz) on y."""
    import plotly.graph_objects as go

    hz = np.arange(vocoder.cfg.n_bins) * vocoder.cfg.sample_rate / vocoder.cfg.n_fft
    db = 20 / np.log(10) * vocoder.templates.T.numpy()  # natural-log magnitude -> dB
    fig = go.Figure(go.Heatmap(z=db, x=[str(u) for u in range(vocoder.n_units)], y=hz, colorscale="Viridis",
                               colorbar={"title": "dB"}))
    fig.update_layout(title=title, xaxis={"title": "unit", "type": "category"}, yaxis={"title": "Hz"},
                      height=380, margin={"l": 10, "r": 10, "t": 40, "b": 40})
    return fig


def prediction_html(a: Analysis, reference: str | None = None) -> str:
    """A one-paragraph HTML summary of an analysis (what the widget's text shows)."""
    dur = len(a.wave) / SAMPLE_RATE
    head = (f"<b>{html.escape(a.name)}</b> &middot; {dur:.2f} s &middot; {len(a.frame_units)} frames &rarr; "
            f"{len(a.units)} units")
    if a.entry is None:
        return head + "<br>no trained prompt in this run: run notebook 03 to predict"
    e = a.entry
    best = "" if a.scores is None else f" (p = {a.scores[a.label]:.2f})"
    shown = html.escape(str(a.label)) if a.label else "<i>(empty)</i>"  # an ASR prompt may emit nothing
    ref = "" if reference is None else f" &middot; reference: <i>{html.escape(reference)}</i>"
    return (f"{head}<br>prediction: <b class='spkit-label'>{shown}</b>{best}{ref}<br>"
            f"task {e.task} &middot; {e.method} &middot; verbalizer {e.verbalizer} &middot; seed {e.seed} "
            f"&middot; {a.predict_ms:.0f} ms")


# --------------------------------------------------------------------------------------------
# The widget app
# --------------------------------------------------------------------------------------------

def set_output(out: Any, obj: Any) -> None:
    """Make ``obj`` (a plotly figure, Markdown...) the only content of the ``ipywidgets.Output`` ``out``.

    Sets the widget's ``outputs`` from the kernel (as ``Output.append_display_data`` does) instead of
    capturing with ``with out:`` (see :class:`DemoApp`); the frontend renders them the same way.
    """
    if hasattr(obj, "to_plotly_json"):  # a plotly figure: its own mimetype, whatever the default renderer
        import plotly.io as pio

        data, metadata = pio.renderers["plotly_mimetype"].to_mimebundle(obj.to_dict()), {}
    else:
        from IPython.core.interactiveshell import InteractiveShell

        data, metadata = InteractiveShell.instance().display_formatter.format(obj)
    data.setdefault("text/plain", repr(obj))
    out.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)


class DemoApp:
    """The notebook's widgets: clip source, prompt choice, player, units figure, probability bars.

    Build it and call :meth:`show` (it runs :meth:`update` once, so the outputs exist without any
    interaction, e.g. under papermill). Every widget change calls :meth:`update`. Widgets carry CSS classes
    (``spkit-clip``, ``spkit-prediction``...) so a browser test can find them.
    """

    def __init__(self, run: str | os.PathLike, task: str | None = None, corpus: str | None = None,
                 vocoder: Any = None, n_clips: int = 40, voices: Sequence[str] | None = None):
        import ipywidgets as w

        self.session = DemoSession(run)
        self.vocoder = vocoder
        tasks = self.session.tasks()
        self.task = task if task is not None else (tasks[0] if tasks else "kws")
        if tasks and self.task not in tasks:
            raise DemoError(f"{self.session.layout.root / 'prompts'}: no prompts for task {self.task!r} "
                            f"(the run has: {', '.join(tasks)})")
        self.corpus = corpus
        self.n_clips = n_clips
        self.clips = test_clips(run, corpus or self.task, n_clips)
        if not self.clips:
            raise DemoError(f"{self.session.layout.unit_dir(corpus or self.task)}: no test clips with audio")
        self.last: Analysis | None = None
        self._busy = False

        self.source = w.ToggleButtons(options=["test clip", "upload", "synthesize"], value="test clip",
                                      description="source")
        self.clip = w.Dropdown(options=self._clip_options(), value=0, description="clip",
                               layout={"width": "420px"})
        self.upload = w.FileUpload(accept=".wav,.flac", multiple=False, description="upload WAV")
        self.text = w.Text(value=DEFAULT_PHRASE, description="phrase", layout={"width": "420px"})
        self.voice = w.Dropdown(options=list(voices or demo_voices()), description="voice")
        self.speak = w.Button(description="synthesize", icon="volume-up")
        self.task_w = w.Dropdown(options=tasks or [self.task], value=self.task, description="task")
        self.method = w.Dropdown(description="method")
        self.verbalizer = w.Dropdown(description="verbalizer")
        self.seed = w.Dropdown(description="seed")
        self.hear = w.Button(description="hear the units", icon="play", disabled=vocoder is None)
        self.prediction = w.HTML()
        self.player = w.HBox()
        # Figures go into Output widgets by setting their ``outputs`` (:func:`set_output`), never by capturing
        # with ``with out:``: under papermill, nbclient answers a capture by sending the widget's whole state
        # back over the shell channel while it awaits the cell's reply, which hung executions here
        # (jupyter/nbclient#312).
        self.bars = w.Output()
        self.figure = w.Output()
        for widget, cls in ((self.clip, "spkit-clip"), (self.task_w, "spkit-task"),
                            (self.method, "spkit-method"), (self.verbalizer, "spkit-verbalizer"),
                            (self.seed, "spkit-seed"), (self.prediction, "spkit-prediction"),
                            (self.player, "spkit-player"), (self.bars, "spkit-bars"),
                            (self.figure, "spkit-units"), (self.hear, "spkit-hear")):
            widget.add_class(cls)
        self._refresh_prompt_options()

        self.clip.observe(self._on_clip, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.speak.on_click(lambda _: self._set_source("synthesize"))
        self.source.observe(lambda _: self.update(), names="value")
        self.task_w.observe(self._on_task, names="value")
        for dd in (self.method, self.verbalizer):
            dd.observe(self._on_prompt_field, names="value")
        self.seed.observe(lambda _: self.update(), names="value")
        self.hear.on_click(lambda _: self.play_units())

        # An oracle run's units come from a corpus clip's alignment: say so before anyone uploads a clip.
        self.note = w.HTML(ORACLE_NOTE if self.session.oracle else "")
        self.note.add_class("spkit-note")
        self.widget = w.VBox([
            self.note, self.source,
            w.HBox([self.clip]), w.HBox([self.upload]), w.HBox([self.text, self.voice, self.speak]),
            w.HBox([self.task_w, self.method]), w.HBox([self.verbalizer, self.seed]),
            self.prediction, w.HBox([self.player, self.hear]), self.bars, self.figure])

    # ---- options
    def _clip_options(self) -> list[tuple[str, int]]:
        return [(c.caption, i) for i, c in enumerate(self.clips)]

    def _entries(self, **fields: Any) -> list[PromptEntry]:
        return [e for e in self.session.catalog
                if all(getattr(e, k) == v for k, v in fields.items() if v is not None)]

    def _refresh_prompt_options(self) -> None:
        """Cascade: task -> methods -> verbalizers -> seeds, each over what exists in RUN/prompts."""
        self._busy = True  # one update at the end, not one per dropdown
        try:
            task = self.task_w.value
            methods = sorted({e.method for e in self._entries(task=task)})
            self.method.options = methods
            if methods and self.method.value not in methods:
                self.method.value = "deep_prompt" if "deep_prompt" in methods else methods[0]
            verbs = sorted({e.verbalizer for e in self._entries(task=task, method=self.method.value)})
            self.verbalizer.options = verbs
            if verbs and self.verbalizer.value not in verbs:
                self.verbalizer.value = verbs[0]
            seeds = sorted({e.seed for e in self._entries(task=task, method=self.method.value,
                                                          verbalizer=self.verbalizer.value)})
            self.seed.options = seeds
            if seeds and self.seed.value not in seeds:
                self.seed.value = seeds[0]
        finally:
            self._busy = False

    def entry(self) -> PromptEntry | None:
        """The prompt the dropdowns select (None when the run has no prompts)."""
        if not self.session.catalog or self.method.value is None:
            return None
        return self.session.find(self.task_w.value, self.method.value, self.verbalizer.value, self.seed.value)

    # ---- events
    def _on_clip(self, _: Any) -> None:
        if self.source.value != "test clip":
            self._set_source("test clip")  # its observer updates
        else:
            self.update()

    def _on_upload(self, _: Any) -> None:
        if self.upload.value:
            self._set_source("upload")

    def _set_source(self, source: str) -> None:
        if self.source.value == source:
            self.update()
        else:
            self.source.value = source  # its observer updates

    def _on_task(self, _: Any) -> None:
        task = self.task_w.value
        corpus = self.corpus or task
        try:
            self.clips = test_clips(self.session.layout.root, corpus, self.n_clips)
        except DemoError:
            self.clips = []
        self._busy = True
        try:
            if self.clips:
                self.clip.options = self._clip_options()
                self.clip.value = 0
        finally:
            self._busy = False
        self._refresh_prompt_options()
        self.update()

    def _on_prompt_field(self, _: Any) -> None:
        if not self._busy:
            self._refresh_prompt_options()
            self.update()

    # ---- the clip
    def current_wave(self) -> tuple[Any, str, str | None, Path | None]:
        """``(wave, name, reference, file)`` of the selected source (``file``: a test clip's, else None)."""
        if self.source.value == "upload" and self.upload.value:
            item = self.upload.value[0]
            return wave_from_upload(item["content"], item["name"]), item["name"], None, None
        if self.source.value == "synthesize":
            name = f"“{self.text.value}” ({self.voice.value})"
            return synthesize_clip(self.text.value, self.voice.value), name, None, None
        clip = self.clips[self.clip.value or 0]
        return load_audio(clip.path), clip.uid, clip.label, clip.path

    def update(self) -> Analysis | None:
        """Analyse the selected clip with the selected prompt and redraw every output."""
        import ipywidgets as w

        if self._busy:
            return None
        try:
            wave, name, ref, path = self.current_wave()
            a = self.session.analyse(wave, self.entry(), name, path)
        except (AudioError, DemoError, OSError, RuntimeError, ValueError) as e:
            self.prediction.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"
            return None
        self.last = a
        a.extra["reference"] = ref
        self.prediction.value = prediction_html(a, ref)
        self.player.children = [w.VBox([w.HTML("original"), w.Audio(value=wav_bytes(a.wave), format="wav",
                                                                     autoplay=False, loop=False)])]
        set_output(self.bars, self.bars_view())
        set_output(self.figure, self.units_view())
        return a

    def bars_view(self) -> Any:
        """The class-probability bars of the last analysis (a note when there are none: ASR, no prompt)."""
        from IPython.display import Markdown

        a = self.last
        if a is None or a.scores is None:
            return Markdown("*no class probabilities for this clip and prompt*")
        return probability_figure(a.scores, f"{a.entry.task}: class probabilities · {a.name}",
                                  a.extra.get("reference"))

    def units_view(self) -> Any:
        """Waveform, spectrogram and units of the last analysed clip."""
        from IPython.display import Markdown

        if self.last is None:
            return Markdown("*no clip analysed*")
        return viz.waveform_units_figure(self.last.wave, self.last.frame_units, title=self.last.name)

    def show(self) -> Analysis | None:
        """Analyse the selected clip, then display the app; returns that first analysis (None on error)."""
        from IPython.display import display

        a = self.update()
        display(self.widget)
        return a

    def play_units(self) -> Any:
        """Resynthesize the last clip's units (its own durations) and put a second player beside the
        original; returns the ``(samples,)`` waveform at 16 kHz."""
        import ipywidgets as w

        if self.vocoder is None or self.last is None:
            return None
        wave = self.vocoder.synthesize(self.last.units, self.last.durations)
        player = w.Audio(value=wav_bytes(wave), format="wav", autoplay=False, loop=False)
        self.player.children = [*self.player.children[:1], w.VBox([w.HTML("from the units"), player])]
        return wave

"""Predict task labels for audio files with a run's unit model, uLM and a trained prompt.

:class:`Predictor` loads everything once and then answers :meth:`Predictor.predict_file` /
:meth:`Predictor.predict_wave` per clip: audio at any rate (:func:`spkit.audio.load_audio` resamples to
16 kHz and downmixes) -> dense features -> k-means units -> deduplicated units -> ``[</s>, units, <sep>]``
-> the prompted uLM -> the label.

What it loads, all through the run-artifact loaders (:mod:`spkit.artifacts`):

* the unit model: ``RUN/units/unit_model.json`` (extractor kind, checkpoint, layer, ``km.bin`` and their
  fingerprints, written by unit discovery) as a :class:`~spkit.units.encoder.SpeechEncoder`
  (:meth:`~spkit.units.encoder.SpeechEncoder.from_run`);
* the uLM: ``RUN/ulm`` via :func:`spkit.artifacts.load_run_ulm` (the uLM trained in the run, or
  the GSLM checkpoint it names); for the ``deep_prompt_random_lm`` control the random uLM of the same
  shape is rebuilt (:func:`spkit.prompt.random_lm.random_ulm`, seed ``info["random_lm_seed"]`` of the
  prompt file, default :data:`~spkit.prompt.random_lm.RANDOM_LM_SEED`);
* the prompt: ``RUN/prompts/<task>/<method>/seed<N>/prompt.pt`` (:func:`find_prompt` over
  :func:`spkit.artifacts.prompt_files`), loaded by
  :func:`spkit.prompt.checkpoint.load_prompt_on_ulm`, which refuses a uLM or unit model whose fingerprint
  differs from the one it was trained with.

In an oracle-topline run (units = the synthesizer's phone labels, :mod:`spkit.units.oracle`) the unit model is
an :class:`~spkit.units.oracle.OracleEncoder`: a file of the run's synthesized corpora is predicted from its
alignment; any other audio gets an error line saying that oracle units need one.

Classification tasks return a probability per label (:func:`spkit.prompt.decode.score_labels`: constrained
scoring of every label's token sequence, softmax over labels; the learnable verbalizer's class softmax);
ASR returns the beam-decoded transcript and ``scores`` is None; slot filling (``sf``) returns the decoded
slots as a tagged string (``B-city PARIS E-city``), and :meth:`Predictor.predict_lines` adds them as
``"slots": [[type, value], ...]``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spkit.artifacts import PROMPT_FILE, load_run_ulm, prompt_files
from spkit.audio import AudioError, load_audio
from spkit.errors import UserError
from spkit.io import read_json
from spkit.layout import RunLayout
from spkit.prompt.checkpoint import load_prompt_on_ulm, read_prompt_file, trained_on_random_ulm
from spkit.prompt.decode import beam_decode, score_labels
from spkit.prompt.results import load_results
from spkit.prompt.slots import slot_list
from spkit.prompt.tasks import TASKS, Collator, TaskExample
from spkit.units.encoder import SpeechEncoder

__all__ = ["PROMPT_FILE", "PredictError", "Prediction", "Predictor", "find_prompt"]


class PredictError(UserError, ValueError):
    """The run folder lacks what prediction needs, or a request is invalid; the message says which."""


# --------------------------------------------------------------------------------------------
# Prompt files in the run
# --------------------------------------------------------------------------------------------

def _best_seed(layout: RunLayout, task: str, method: str, seeds: list[int]) -> int:
    """The seed with the best *validation* metric in results.json (``runs[].extra.valid``: no test score
    chooses anything), else the lowest available."""
    try:  # a missing results.json is an empty one; a damaged one is named, not silently ignored
        info = load_results(layout.results_json)["tasks"].get(task) or {}
    except (ValueError, OSError) as e:
        raise PredictError(f"{e} (results.json chooses the seed; --seed N picks one without it)") from None
    runs = [r for r in (info.get("methods", {}).get(method) or {}).get("runs", [])
            if r["seed"] in seeds and isinstance(r.get("extra", {}).get("valid"), (int, float))
            and r["extra"]["valid"] == r["extra"]["valid"]]  # NaN: no validation split
    if not runs:
        return seeds[0]
    sign = 1 if info.get("lower_is_better") else -1
    return min(runs, key=lambda r: (sign * r["extra"]["valid"], r["seed"]))["seed"]


def find_prompt(run: str | os.PathLike, task: str, method: str = "deep_prompt",
                seed: int | None = None) -> Path:
    """The prompt file of ``task``/``method``/``seed`` (``seed=None``: the best validation score in
    results.json, else the first).

    Raises :class:`PredictError` listing what the run has when the request does not exist.
    """
    layout = RunLayout.at(run)
    have: dict[str, dict[str, list[int]]] = {}
    for f in prompt_files(layout.root):
        have.setdefault(f.task, {}).setdefault(f.method, []).append(f.seed)
    if task not in TASKS:
        raise PredictError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if task not in have:
        raise PredictError(f"{layout.root / 'prompts'}: no trained prompts for task {task!r} "
                           f"(the run has: {', '.join(sorted(have)) or 'none'})")
    if method not in have[task]:
        raise PredictError(f"{layout.root / 'prompts' / task}: no method {method!r} "
                           f"(available: {', '.join(sorted(have[task]))})")
    seeds = have[task][method]
    if seed is None:
        seed = _best_seed(layout, task, method, seeds)
    elif seed not in seeds:
        raise PredictError(f"{layout.root / 'prompts' / task / method}: no seed {seed} (available: {seeds})")
    return layout.prompt_dir(task, method, seed) / PROMPT_FILE


# --------------------------------------------------------------------------------------------
# The predictor
# --------------------------------------------------------------------------------------------

@dataclass
class Prediction:
    """One clip's answer: ``label`` and, for classification, ``scores`` {label: probability} (sum 1)."""

    label: str
    scores: dict[str, float] | None
    units: list[int]
    seconds: float


class Predictor:
    """Load a run's unit model, uLM and one prompt once; predict many clips.

    Args:
        run: the run folder.
        task: ``kws``, ``intent``, ``lid``, ``asr`` or ``sf``.
        method: the prompt method folder (``deep_prompt``, ``input_prompt``, ``deep_prompt_random_lm``...).
        seed: which seed's prompt (None: the best validation score in results.json, else the lowest).
        prompt: an explicit prompt file instead of the run's (method/seed then ignored).
        device: where the extractor and the uLM run.
        beam, max_len: ASR beam width and most output tokens; None (default): the settings the run's
            evaluation used (``decode`` in the ``eval.json`` beside the prompt file).

    Raises :class:`PredictError` (or :class:`~spkit.prompt.checkpoint.PromptFileError`) naming the file
    when something is missing or does not fit (see the module docstring for what is loaded).
    """

    def __init__(self, run: str | os.PathLike, task: str, method: str = "deep_prompt",
                 seed: int | None = None, *, prompt: str | os.PathLike | None = None, device: str = "cpu",
                 beam: int | None = None, max_len: int | None = None):
        if task not in TASKS:
            raise PredictError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        self.layout = RunLayout.at(run)
        if not self.layout.root.is_dir():
            raise PredictError(f"{self.layout.root}: no such run folder")
        self.prompt_path = Path(prompt) if prompt is not None else find_prompt(run, task, method, seed)
        self.device = torch.device(device)
        try:
            self.encoder = SpeechEncoder.from_run(self.layout.root, device=device)
            lm, self.dictionary = load_run_ulm(self.layout.root, device=device)
        except FileNotFoundError as e:  # DataError included: a stage of the run has not run
            raise PredictError(str(e)) from None
        raw = read_prompt_file(self.prompt_path)
        if raw["task"]["name"] != task:
            raise PredictError(f"{self.prompt_path}: a prompt for task {raw['task']['name']!r}, not {task!r}")
        control = trained_on_random_ulm(raw) or method.endswith("random_lm")
        self.model = load_prompt_on_ulm(self.prompt_path, lm, self.encoder.fingerprints, control).eval()
        lm = self.model.lm
        self.spec = self.model.spec
        self.collator = Collator(self.spec, self.model.verbalizer, self.dictionary,
                                 max_len=lm.cfg.max_positions, with_labels=False)
        run_beam = run_max_len = None
        if self.spec.kind == "sequence" and (beam is None or max_len is None):
            run_beam, run_max_len = self._run_decode_settings()
        self.beam = beam if beam is not None else run_beam
        self.max_len = max_len if max_len is not None else run_max_len
        self.task, self.method = task, method

    def _run_decode_settings(self) -> tuple[int, int]:
        """``(beam, max_len)`` the run's evaluation decoded this prompt with (``eval.json`` beside it)."""
        path = self.prompt_path.parent / "eval.json"
        decode = read_json(path).get("decode") if path.exists() else None
        if not decode:
            raise PredictError(f"{path}: no decoding settings recorded for this prompt (a run made before "
                               "they were recorded, or a prompt outside a run): give --beam and --max-len")
        return int(decode["beam"]), int(decode["max_len"])

    def units(self, wave: Any, path: str | os.PathLike | None = None) -> list[int]:
        """Deduplicated unit ids of a 16 kHz mono ``(samples,)`` waveform (the uLM's input); ``path``: its
        file, when there is one (the oracle topline's units come from the file's synthesizer alignment, and
        raw audio without one is refused with an error saying so)."""
        return self.encoder.encode(torch.as_tensor(wave, dtype=torch.float32), path=path).units.tolist()

    def predict_wave(self, wave: Any, name: str = "<wave>", path: str | os.PathLike | None = None
                     ) -> Prediction:
        """Predict from a 16 kHz mono waveform ``(samples,)`` float32 (``path``: its file, see
        :meth:`units`)."""
        t0 = time.perf_counter()
        units = self.units(wave, path)
        batch = self.collator([TaskExample(name, name, "predict", "", units, "")]).to(self.device)
        with torch.inference_mode():
            if self.spec.kind == "classification":
                probs = score_labels(self.model, batch)[0].float().cpu().tolist()
                scores = {lb: p for lb, p in zip(self.spec.labels, probs)}
                label = max(scores, key=scores.__getitem__)
            else:
                tokens = beam_decode(self.model, batch, beam=self.beam, max_len=self.max_len)[0]
                label = self.spec.label_from_atoms(self.model.verbalizer.decode_tokens(tokens))
                scores = None
        return Prediction(label, scores, units, time.perf_counter() - t0)

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        """Predict from an audio file (WAV/FLAC, any rate; :class:`~spkit.audio.AudioError` if unreadable)."""
        return self.predict_wave(load_audio(path), str(path), path)

    def predict_lines(self, paths: Iterable[str | os.PathLike]) -> Iterator[dict[str, Any]]:
        """One JSON-ready dict per path: ``{"file", "label", "scores"}`` or ``{"file", "error"}`` (an
        unreadable or failing file does not stop the others)."""
        for p in paths:
            try:
                pred = self.predict_file(p)
            except (AudioError, OSError, ValueError, RuntimeError) as e:
                yield {"file": str(p), "error": str(e)}
                continue
            scores = None if pred.scores is None else {k: round(v, 6) for k, v in pred.scores.items()}
            line: dict[str, Any] = {"file": str(p), "label": pred.label, "scores": scores}
            if self.spec.atom_mode == "slot_symbols":
                line["slots"] = [list(s) for s in slot_list(pred.label)]
            yield line

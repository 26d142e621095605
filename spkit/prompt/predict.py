"""Predict task labels for audio files with a run's unit model, uLM and a trained prompt.

:class:`Predictor` loads everything once (extractor + ``km.bin``, uLM + ``dict.txt``, prompt file) and then
answers :meth:`Predictor.predict_file` / :meth:`Predictor.predict_wave` per clip: audio at any rate
(:func:`spkit.audio.load_audio` resamples to 16 kHz and downmixes) -> dense features -> k-means units ->
deduplicated units -> ``[</s>, units, <sep>]`` -> the prompted uLM -> the label.

Classification tasks return a probability per label (:func:`spkit.prompt.decode.score_labels`: constrained
scoring of every label's token sequence, softmax over labels; the learnable verbalizer's class softmax);
ASR returns the beam-decoded transcript and ``scores`` is null.

The unit model record ``RUN/units/unit_model.json`` names the extractor that made the run's units (the
run layout otherwise keeps only its fingerprint)::

    {"format": "spkit.unit_model", "version": 1,
     "extractor": {"kind": "tiny_hubert" | "hubert" | "logmel" | "mfcc",
                   "checkpoint": "hubert/iter2.pt",      # relative to RUN, or absolute; null for logmel/mfcc
                   "layer": 2,                            # 1-based; null for logmel/mfcc
                   "options": {}},                        # logmel/mfcc constructor options (n_mels...)
     "kmeans": "units/km.bin",                            # relative to RUN, or absolute
     "fingerprints": {"extractor": "...", "kmeans": "..."}}

:func:`write_unit_model` writes it (the units stage should call it). Without it, :func:`load_unit_model`
recovers a tiny HuBERT unit model from the extractor fingerprint in ``RUN/units/**/*.meta.json`` by finding
the checkpoint under ``RUN/hubert/`` whose extractor has that fingerprint; anything else is an error that says
to write the record.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spkit.layout import RunLayout

FORMAT = "spkit.unit_model"
VERSION = 1
RECORD_NAME = "unit_model.json"
EXTRACTOR_KINDS = ("tiny_hubert", "hubert", "logmel", "mfcc")
PROMPT_FILE = "prompt.pt"


class PredictError(ValueError):
    """The run folder lacks what prediction needs, or a request is invalid; the message says which."""


# --------------------------------------------------------------------------------------------
# The unit model record
# --------------------------------------------------------------------------------------------

def _rel(path: str | os.PathLike, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (so a run folder can move), else absolute."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def write_unit_model(run: str | os.PathLike, kind: str, *, checkpoint: str | os.PathLike | None = None,
                     layer: int | None = None, kmeans: str | os.PathLike | None = None,
                     options: Mapping[str, Any] | None = None,
                     fingerprints: Mapping[str, str] | None = None) -> Path:
    """Write ``RUN/units/unit_model.json`` (atomically): which extractor, checkpoint, layer and km.bin made
    the run's units. ``kmeans`` defaults to ``RUN/units/km.bin``; ``fingerprints``: e.g.
    ``{"extractor": ext.fingerprint, "kmeans": km.fingerprint}`` (checked when the record is loaded)."""
    from spkit.io import write_json

    layout = RunLayout.at(run)
    if kind not in EXTRACTOR_KINDS:
        raise PredictError(f"unknown extractor kind {kind!r}; expected one of {', '.join(EXTRACTOR_KINDS)}")
    if kind in ("tiny_hubert", "hubert") and (checkpoint is None or layer is None):
        raise PredictError(f"extractor kind {kind!r} needs a checkpoint and a layer")
    record = {"format": FORMAT, "version": VERSION,
              "extractor": {"kind": kind,
                            "checkpoint": None if checkpoint is None else _rel(checkpoint, layout.root),
                            "layer": layer, "options": dict(options or {})},
              "kmeans": _rel(kmeans if kmeans is not None else layout.kmeans, layout.root),
              "fingerprints": dict(fingerprints or {})}
    return write_json(layout.units / RECORD_NAME, record)


def _resolve(root: Path, p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else root / path


def build_extractor(kind: str, checkpoint: Path | None, layer: int | None, options: Mapping[str, Any],
                    device: str = "cpu") -> Any:
    """An extractor of ``kind`` (see :data:`EXTRACTOR_KINDS`)."""
    if kind == "tiny_hubert":
        from spkit.features.tiny_hubert import TinyHubertExtractor

        assert checkpoint is not None
        return TinyHubertExtractor.from_checkpoint(checkpoint, layer, device=device)
    if kind == "hubert":
        from spkit.features.hubert import HubertExtractor

        assert checkpoint is not None and layer is not None
        return HubertExtractor.from_checkpoint(checkpoint, layer, device=device)
    if kind == "logmel":
        from spkit.features.spectral import LogMelExtractor

        return LogMelExtractor(**options)
    if kind == "mfcc":
        from spkit.features.spectral import MFCCExtractor

        return MFCCExtractor(**options)
    raise PredictError(f"unknown extractor kind {kind!r}; expected one of {', '.join(EXTRACTOR_KINDS)}")


def _infer_record(layout: RunLayout) -> dict[str, Any]:
    """Rebuild a unit-model record from the quantize stage's ``*.meta.json`` (tiny HuBERT only)."""
    metas = sorted(layout.units.glob("**/*.meta.json"))
    if not metas:
        raise PredictError(f"{layout.units / RECORD_NAME}: no unit model record, and no quantized units "
                           f"(*.meta.json) under {layout.units} to infer it from")
    meta = json.loads(metas[0].read_text(encoding="utf-8"))
    ext = meta.get("extractor") or {}
    fp, layer = str(ext.get("fingerprint", "")), ext.get("layer")
    if ext.get("name") == "tiny_hubert" and layer is not None:
        from spkit.features.tiny_hubert import TinyHubertExtractor

        for ckpt in sorted(layout.hubert.glob("*.pt")):
            try:
                candidate = TinyHubertExtractor.from_checkpoint(ckpt, int(layer))
            except (ValueError, OSError):  # not a tiny HuBERT checkpoint (e.g. a training state)
                continue
            if candidate.fingerprint == fp:
                return {"format": FORMAT, "version": VERSION,
                        "extractor": {"kind": "tiny_hubert", "checkpoint": str(ckpt), "layer": int(layer),
                                      "options": {}},
                        "kmeans": str(layout.kmeans), "fingerprints": {"extractor": fp}}
    raise PredictError(f"{layout.units / RECORD_NAME}: no unit model record; the units in {metas[0]} were "
                       f"made by extractor {ext.get('name')!r} ({fp}), which cannot be located from the run "
                       "folder. Write the record with spkit.prompt.predict.write_unit_model(RUN, kind, "
                       "checkpoint=..., layer=...)")


def load_unit_model(run: str | os.PathLike, device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """The run's extractor, :class:`~spkit.units.kmeans.KMeansModel` and unit-model record.

    Raises :class:`PredictError` naming the file when the record is malformed, a file is missing, or a
    stored fingerprint differs from the loaded model's.
    """
    from spkit.io import read_json
    from spkit.units.kmeans import KMeansModel

    layout = RunLayout.at(run)
    path = layout.units / RECORD_NAME
    if path.is_file():
        record = read_json(path)
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION:
            raise PredictError(f"{path}: not a {FORMAT} version {VERSION} record")
    else:
        record = _infer_record(layout)
    try:
        ext = record["extractor"]
        kind, layer, options = ext["kind"], ext.get("layer"), ext.get("options") or {}
        checkpoint = _resolve(layout.root, ext["checkpoint"]) if ext.get("checkpoint") else None
        km_path = _resolve(layout.root, record["kmeans"])
    except (KeyError, TypeError) as e:
        raise PredictError(f"{path}: malformed unit model record ({e})") from None
    if checkpoint is not None and not checkpoint.is_file():
        raise PredictError(f"{path}: extractor checkpoint {checkpoint} does not exist")
    extractor = build_extractor(kind, checkpoint, layer, options, device)
    kmeans = KMeansModel.load(km_path)
    kmeans.check_dim(int(extractor.dim), what=f"features of extractor {kind!r}")
    for name, obj in (("extractor", extractor), ("kmeans", kmeans)):
        stored = (record.get("fingerprints") or {}).get(name)
        if stored and stored != obj.fingerprint:
            raise PredictError(f"{path}: the {name} was recorded with fingerprint {stored}, but the loaded "
                               f"one has {obj.fingerprint}; the files changed after the units were made")
    return extractor, kmeans, record


# --------------------------------------------------------------------------------------------
# Prompt files in the run
# --------------------------------------------------------------------------------------------

def available_prompts(run: str | os.PathLike) -> dict[str, dict[str, list[int]]]:
    """``{task: {method: [seeds]}}`` for every ``RUN/prompts/<task>/<method>/seed<N>/prompt.pt``."""
    out: dict[str, dict[str, list[int]]] = {}
    for p in sorted((RunLayout.at(run).root / "prompts").glob(f"*/*/seed*/{PROMPT_FILE}")):
        seed_dir, method_dir, task_dir = p.parent, p.parent.parent, p.parent.parent.parent
        try:
            seed = int(seed_dir.name[4:])
        except ValueError:
            continue
        out.setdefault(task_dir.name, {}).setdefault(method_dir.name, []).append(seed)
    return {t: {m: sorted(s) for m, s in ms.items()} for t, ms in out.items()}


def _best_seed(layout: RunLayout, task: str, method: str, seeds: list[int]) -> int:
    """The seed with the best test metric in results.json, else the lowest available."""
    from spkit.prompt.results import load_results

    try:
        info = load_results(layout.results_json)["tasks"].get(task) or {}
    except (ValueError, OSError):
        info = {}
    runs = [r for r in (info.get("methods", {}).get(method) or {}).get("runs", []) if r["seed"] in seeds]
    if not runs:
        return seeds[0]
    sign = 1 if info.get("lower_is_better") else -1
    return min(runs, key=lambda r: (sign * r["value"], r["seed"]))["seed"]


def find_prompt(run: str | os.PathLike, task: str, method: str = "deep_prompt",
                seed: int | None = None) -> Path:
    """The prompt file of ``task``/``method``/``seed`` (``seed=None``: best in results.json, else the first).

    Raises :class:`PredictError` listing what the run has when the request does not exist.
    """
    from spkit.prompt.tasks import TASKS

    layout = RunLayout.at(run)
    have = available_prompts(layout.root)
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
        task: ``kws``, ``intent``, ``lid`` or ``asr``.
        method: the prompt method folder (``deep_prompt``, ``input_prompt``, ``deep_prompt_random_lm``...).
        seed: which seed's prompt (None: the best in results.json, else the lowest).
        prompt: an explicit prompt file instead of the run's (method/seed then ignored).
        device: where the extractor and the uLM run.
        beam: ASR beam width; max_len: ASR output tokens at most (default: 400).

    The uLM is ``RUN/ulm`` (fairseq layout, full unpickling: trusted files only); for
    ``deep_prompt_random_lm`` prompts the random uLM is rebuilt from the seed stored in the prompt file's
    ``info["random_lm_seed"]`` (default :data:`spkit.prompt.baselines.RANDOM_LM_SEED`).
    """

    def __init__(self, run: str | os.PathLike, task: str, method: str = "deep_prompt",
                 seed: int | None = None, *, prompt: str | os.PathLike | None = None, device: str = "cpu",
                 beam: int = 5, max_len: int = 400):
        import torch

        from spkit.prompt.checkpoint import load_prompt, read_prompt_file
        from spkit.prompt.tasks import TASKS, Collator
        from spkit.ulm.fairseq_io import load_fairseq_ulm

        if task not in TASKS:
            raise PredictError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        self.layout = RunLayout.at(run)
        if not self.layout.root.is_dir():
            raise PredictError(f"{self.layout.root}: no such run folder")
        self.prompt_path = Path(prompt) if prompt is not None else find_prompt(run, task, method, seed)
        self.device = torch.device(device)
        self.extractor, self.kmeans, self.unit_record = load_unit_model(run, device)
        if not self.layout.ulm.is_dir():
            raise PredictError(f"{self.layout.ulm}: no uLM folder in the run")
        lm, self.dictionary = load_fairseq_ulm(self.layout.ulm, map_location=self.device)
        raw = read_prompt_file(self.prompt_path)
        if raw["task"]["name"] != task:
            raise PredictError(f"{self.prompt_path}: a prompt for task {raw['task']['name']!r}, not {task!r}")
        if method == "deep_prompt_random_lm" and raw["ulm"]["fingerprint"] != lm.fingerprint():
            from spkit.prompt.baselines import RANDOM_LM_SEED, random_ulm

            lm = random_ulm(lm, seed=int(raw.get("info", {}).get("random_lm_seed", RANDOM_LM_SEED)),
                            device=self.device)
        fps = {"extractor": str(self.extractor.fingerprint), "kmeans": self.kmeans.fingerprint}
        self.model = load_prompt(self.prompt_path, lm, fps).eval()
        self.spec = self.model.spec
        self.collator = Collator(self.spec, self.model.verbalizer, self.dictionary,
                                 max_len=lm.cfg.max_positions, with_labels=False)
        self.beam, self.max_len = beam, max_len
        self.task, self.method = task, method

    def units(self, wave: Any) -> list[int]:
        """Deduplicated unit ids of a 16 kHz mono ``(samples,)`` waveform (the uLM's input)."""
        import torch

        from spkit.units.quantize import dedup

        with torch.inference_mode():
            feats = self.extractor.extract(torch.as_tensor(wave, dtype=torch.float32))
            codes = self.kmeans.predict(feats)
        return dedup(codes.tolist())[0]

    def predict_wave(self, wave: Any, name: str = "<wave>") -> Prediction:
        """Predict from a 16 kHz mono waveform ``(samples,)`` float32."""
        import torch

        from spkit.prompt.decode import beam_decode, score_labels
        from spkit.prompt.tasks import TaskExample

        t0 = time.perf_counter()
        units = self.units(wave)
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
        from spkit.audio import load_audio

        return self.predict_wave(load_audio(path), str(path))

    def predict_lines(self, paths: Iterable[str | os.PathLike]) -> Iterator[dict[str, Any]]:
        """One JSON-ready dict per path: ``{"file", "label", "scores"}`` or ``{"file", "error"}`` (an
        unreadable or failing file does not stop the others)."""
        from spkit.audio import AudioError

        for p in paths:
            try:
                pred = self.predict_file(p)
            except (AudioError, OSError, ValueError, RuntimeError) as e:
                yield {"file": str(p), "error": str(e)}
                continue
            scores = None if pred.scores is None else {k: round(v, 6) for k, v in pred.scores.items()}
            yield {"file": str(p), "label": pred.label, "scores": scores}

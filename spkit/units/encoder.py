"""The one way from audio to units: a dense extractor, a k-means quantizer and deduplication as one object.

Like textlesslib's ``SpeechEncoder``: :class:`SpeechEncoder` holds a feature extractor
(:class:`spkit.features.base.FeatureExtractor`, 16 kHz audio -> ``(frames, dim)`` at 50 frames/s) and a
:class:`~spkit.units.kmeans.KMeansModel` (``(frames, dim)`` -> ``(frames,)`` unit ids), and
:meth:`SpeechEncoder.encode` returns aligned streams (:class:`EncodedSpeech`): ``units`` (deduplicated),
``durations`` (frames per unit) and, on request, the dense ``features``. Quantization of corpora
(:mod:`spkit.units.quantize`), ``spkit predict``, the demo and the analyses all go through it.

Factories, one per kind of unit model:

* :meth:`SpeechEncoder.from_run` -- the embedded one: a run's ``units/unit_model.json`` (written by unit
  discovery: extractor kind, checkpoint, layer, CMVN, ``km.bin`` and their fingerprints);
* :meth:`SpeechEncoder.from_base` -- the shipped one: an spkit-base folder (``spkit-base.json``: its tiny
  HuBERT, layer, CMVN and ``km.bin``);
* :meth:`SpeechEncoder.from_gslm` -- GSLM's: a fairseq HuBERT checkpoint (layer 6) and its ``km.bin``;
* :meth:`SpeechEncoder.from_parts` -- any extractor kind, checkpoint, layer and ``km.bin``.

The oracle topline's units (the synthesizer's phone labels, :mod:`spkit.units.oracle`) have no extractor
and no k-means; :meth:`SpeechEncoder.from_run` of such a run returns its
:class:`~spkit.units.oracle.OracleEncoder`.

Every factory loads checkpoints with full unpickling: trusted files only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spkit.data.base import DataError
from spkit.features.base import FeatureExtractor, check_wave, num_frames
from spkit.features.factory import load_extractor
from spkit.io import read_json, write_json
from spkit.layout import RunLayout
from spkit.units.encoded import EncodedSpeech, encoded_speech
from spkit.units.encoded import dedup as dedup  # re-exported: the encoder's deduplication
from spkit.units.kmeans import KMeansModel
from spkit.units.oracle import ORACLE_KIND, OracleEncoder

KMEANS_KIND = "ssl_kmeans"
"""``kind`` of a run's units made by an extractor and k-means (a ``unit_model.json`` without ``kind``); the
other kind is the oracle topline's, ``oracle_phones`` (:mod:`spkit.units.oracle`)."""

BASE_FORMAT = "spkit.base"
"""``format`` of an spkit-base folder's ``spkit-base.json`` (see :mod:`spkit.recipes.spkit_base`)."""


class SpeechEncoder:
    """Dense extractor + k-means quantizer + deduplication (see the module docstring).

    Args:
        extractor: 16 kHz ``(samples,)`` -> ``(frames, dim)`` features, ``frames == num_frames(samples)``.
        kmeans: the quantizer; its dimension must equal ``extractor.dim``.
        deduplicate: collapse repeated units (the uLM's input); False gives one unit per frame.
        device: where the k-means argmin runs (the extractor runs where it was built).
    """

    def __init__(self, extractor: FeatureExtractor, kmeans: KMeansModel, *, deduplicate: bool = True,
                 device: str | torch.device = "cpu"):
        kmeans.check_dim(int(extractor.dim), what=f"features of extractor {extractor.name!r}")
        self.extractor, self.kmeans, self.deduplicate = extractor, kmeans, deduplicate
        self.device = torch.device(device)
        self.record: dict[str, Any] | None = None  # the unit_model.json of from_run, else None

    # ---- what it is ------------------------------------------------------------------------
    kind = KMEANS_KIND
    """What the units are (``unit_model.json``'s ``kind``): SSL features quantized by k-means."""

    @property
    def vocab_size(self) -> int:
        """K, the number of unit ids."""
        return self.kmeans.n_clusters

    @property
    def layer(self) -> int | None:
        return getattr(self.extractor, "layer", None)

    @property
    def fingerprints(self) -> dict[str, str]:
        """``{"extractor", "kmeans"}`` fingerprints: what prompt files and unit caches are keyed by."""
        return {"extractor": str(self.extractor.fingerprint), "kmeans": self.kmeans.fingerprint}

    def __repr__(self) -> str:
        return (f"SpeechEncoder({self.extractor.name}, layer={self.layer}, K={self.vocab_size}, "
                f"deduplicate={self.deduplicate})")

    # ---- the steps -------------------------------------------------------------------------
    def features(self, wave: Tensor) -> Tensor:
        """``(samples,)`` float32 at 16 kHz -> ``(frames, dim)`` dense features."""
        with torch.inference_mode():
            return self.extractor.extract(check_wave(wave))

    def features_batch(self, waves: Sequence[Tensor], batch_size: int = 16) -> list[Tensor]:
        """Features of many clips, ``[(frames_i, dim)]``, the same as :meth:`features` one at a time.

        A padding-invariant extractor (the tiny HuBERT) batches clips of any length (sorted by length,
        padded, lengths passed); any other extractor with ``extract_batch`` batches only clips of exactly
        equal length (HuBERT is not padding-invariant: its first GroupNorm sees the padding).
        """
        waves = [check_wave(w) for w in waves]
        feats: list[Tensor | None] = [None] * len(waves)
        ex = self.extractor
        can_batch = batch_size > 1 and hasattr(ex, "extract_batch")
        with torch.inference_mode():
            if can_batch and getattr(ex, "padding_invariant", False):
                order = sorted(range(len(waves)), key=lambda k: int(waves[k].shape[0]))
                for s in range(0, len(order), batch_size):
                    part = order[s:s + batch_size]
                    lens = torch.tensor([int(waves[k].shape[0]) for k in part])
                    batch = torch.zeros(len(part), int(lens.max()))
                    for b, k in enumerate(part):
                        batch[b, : lens[b]] = waves[k]
                    out = ex.extract_batch(batch, lens)  # type: ignore[attr-defined]
                    for b, k in enumerate(part):
                        feats[k] = out[b, : num_frames(int(lens[b]))]
            elif can_batch:
                by_len: dict[int, list[int]] = {}
                for k, w in enumerate(waves):
                    by_len.setdefault(int(w.shape[0]), []).append(k)
                for idx in by_len.values():
                    for s in range(0, len(idx), batch_size):
                        part = idx[s:s + batch_size]
                        if len(part) == 1:
                            feats[part[0]] = ex.extract(waves[part[0]])
                            continue
                        out = ex.extract_batch(torch.stack([waves[k] for k in part]))  # type: ignore[attr-defined]
                        for k, f in zip(part, out):
                            feats[k] = f
            else:
                feats = [ex.extract(w) for w in waves]
        return [f for f in feats if f is not None]

    def quantize(self, features: Tensor) -> Tensor:
        """``(frames, dim)`` -> ``(frames,)`` int64 unit ids (one per frame), on the CPU."""
        if features.ndim != 2 or features.shape[1] != self.kmeans.dim:
            raise ValueError(f"extractor {self.extractor.name!r} returned features of shape "
                             f"{tuple(features.shape)}; expected (frames, {self.kmeans.dim})")
        return self.kmeans.predict(features, device=self.device).cpu()

    def from_frame_units(self, frame_units: Tensor, features: Tensor | None = None) -> EncodedSpeech:
        """Per-frame units -> :class:`EncodedSpeech` (deduplicated when the encoder deduplicates)."""
        return encoded_speech(frame_units, self.deduplicate, features)

    # ---- the whole chain -------------------------------------------------------------------
    def encode(self, wave: Tensor, *, with_features: bool = False,
               path: str | os.PathLike | None = None) -> EncodedSpeech:
        """``(samples,)`` float32 mono audio at 16 kHz -> aligned ``units``, ``durations`` (frames of
        20 ms per unit) and, with ``with_features``, the ``(frames, dim)`` dense features.

        ``path``: the file the clip came from, when there is one. Audio encoders ignore it; the oracle
        topline's encoder (:class:`spkit.units.oracle.OracleEncoder`) needs it to find the clip's alignment,
        so callers that have a file pass it to whichever encoder the run has."""
        feats = self.features(wave)
        return self.from_frame_units(self.quantize(feats), feats if with_features else None)

    __call__ = encode

    def encode_many(self, waves: Sequence[Tensor], *, batch_size: int = 16,
                    with_features: bool = False) -> list[EncodedSpeech]:
        """:meth:`encode` of every clip, through :meth:`features_batch` (same units, fewer calls)."""
        return [self.from_frame_units(self.quantize(f), f if with_features else None)
                for f in self.features_batch(waves, batch_size)]

    # ---- factories -------------------------------------------------------------------------
    @classmethod
    def from_parts(cls, features: str, kmeans: str | os.PathLike, *,
                   checkpoint: str | os.PathLike | None = None, layer: int | None = None, cmvn: bool = False,
                   device: str = "cpu",
                   deduplicate: bool = True) -> SpeechEncoder:
        """Any extractor kind (``mfcc``, ``logmel``, ``hubert``, ``tiny_hubert``; see
        :func:`spkit.features.load_extractor`) with the ``km.bin`` at ``kmeans``."""
        ext = load_extractor(features, checkpoint=checkpoint,
                             layer=layer if features in ("hubert", "tiny_hubert") else None,
                             device=device, cmvn=cmvn)
        return cls(ext, KMeansModel.load(kmeans), deduplicate=deduplicate, device=device)

    @classmethod
    def from_gslm(cls, hubert: str | os.PathLike, kmeans: str | os.PathLike, *, layer: int = 6,
                  device: str = "cpu", deduplicate: bool = True) -> SpeechEncoder:
        """GSLM's unit model: a fairseq HuBERT checkpoint (``hubert_base_ls960.pt``) at ``layer`` (6), raw
        features (no CMVN), and its ``km.bin`` (K=50/100/200)."""
        return cls.from_parts("hubert", kmeans, checkpoint=hubert, layer=layer, cmvn=False, device=device,
                              deduplicate=deduplicate)

    @classmethod
    def from_base(cls, folder: str | os.PathLike, *, device: str = "cpu",
                  deduplicate: bool = True) -> SpeechEncoder:
        """The shipped unit model of an spkit-base folder: its tiny HuBERT at the card's layer, CMVN as the
        card says, and its ``km.bin``."""
        card = read_base_card(folder)
        return cls.from_parts("tiny_hubert", card["kmeans"], checkpoint=card["hubert"],
                              layer=int(card["layer"]), cmvn=bool(card["cmvn"]), device=device,
                              deduplicate=deduplicate)

    @classmethod
    def from_run(cls, run: str | os.PathLike, *, device: str = "cpu",
                 deduplicate: bool = True) -> SpeechEncoder | OracleEncoder:
        """A run's unit model (``RUN/units/unit_model.json``); refuses weights that changed since the run's
        units were made (their fingerprint differs from the recorded one).

        An oracle run (``kind: oracle_phones``) gets its :class:`spkit.units.oracle.OracleEncoder`, which
        answers the same calls (``encode`` with the clip's ``path``, ``fingerprints``, ``vocab_size``,
        ``extractor`` for the downstream baseline) and refuses audio that has no synthesizer alignment."""
        layout = RunLayout.at(run)
        path = layout.units / "unit_model.json"
        if not path.exists():
            raise DataError(f"{path}: no unit model in this run (run notebook 01 / unit discovery first)")
        rec = read_json(path)
        if rec.get("kind", KMEANS_KIND) != KMEANS_KIND:
            if rec["kind"] != ORACLE_KIND:
                raise DataError(f"{path}: unknown kind of units {rec['kind']!r}")
            return OracleEncoder.from_record(layout.root, rec, device=device, deduplicate=deduplicate)

        def absolute(p: str | None) -> str | None:
            return None if p is None else str(p if Path(p).is_absolute() else layout.root / p)

        enc = cls.from_parts(rec["features"], absolute(rec["kmeans"]) or "",
                             checkpoint=absolute(rec["checkpoint"]), layer=rec["layer"],
                             cmvn=bool(rec.get("cmvn", False)), device=device, deduplicate=deduplicate)
        if enc.extractor.fingerprint != rec["extractor_fingerprint"]:
            raise DataError(f"{path}: the extractor's weights changed since the units were made "
                            f"({enc.extractor.fingerprint} != {rec['extractor_fingerprint']})")
        enc.record = rec
        return enc


def save_unit_model(run: str | os.PathLike, encoder: SpeechEncoder, features: str,
                    checkpoint: str | os.PathLike | None) -> Path:
    """Record how to rebuild ``encoder`` (``RUN/units/unit_model.json``, read by
    :meth:`SpeechEncoder.from_run`); paths inside the run are written relative to it. The k-means is the run's
    ``units/km.bin``."""
    layout = RunLayout.at(run)

    def rel(p: str | os.PathLike | None) -> str | None:
        if p is None:
            return None
        p = Path(p).resolve()
        return str(p.relative_to(layout.root)) if p.is_relative_to(layout.root) else str(p)

    km = encoder.kmeans
    return write_json(layout.units / "unit_model.json", {
        "features": features, "checkpoint": rel(checkpoint), "layer": encoder.layer,
        "kmeans": rel(layout.kmeans), "n_clusters": km.n_clusters, "dim": km.dim,
        "cmvn": bool(getattr(encoder.extractor, "cmvn", False)),
        "targets": getattr(encoder.extractor, "targets", None),
        "extractor_fingerprint": encoder.extractor.fingerprint, "kmeans_fingerprint": km.fingerprint})


def read_base_card(folder: str | os.PathLike) -> dict[str, Any]:
    """An spkit-base folder's ``spkit-base.json`` with absolute paths (``hubert``, ``kmeans``, ``ulm``); a
    missing or broken folder is a :class:`DataError` naming the file."""
    folder = Path(folder)
    path = folder / "spkit-base.json"
    if not path.is_file():
        raise DataError(f"{path}: no spkit-base model card; build it with "
                        f"`spkit pretrain-base --out {folder}`")
    card = read_json(path)
    if card.get("format") != BASE_FORMAT:
        raise DataError(f"{path}: not an spkit-base folder (format {card.get('format')!r})")
    for key in ("hubert", "kmeans", "ulm"):
        if not (folder / card[key]).exists():
            raise DataError(f"{folder / card[key]}: missing ({key} of spkit-base)")
    return {**card, **{k: str(folder / card[k]) for k in ("hubert", "kmeans", "ulm")}}

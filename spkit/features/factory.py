"""One entry point for every extractor kind: ``load_extractor("hubert", checkpoint=..., layer=6)``."""

from __future__ import annotations

import os

from spkit.features.base import FeatureExtractor
from spkit.features.hubert import HubertExtractor
from spkit.features.spectral import LogMelExtractor, MFCCExtractor
from spkit.features.tiny_hubert import TinyHubertExtractor

KINDS = ("mfcc", "logmel", "hubert", "tiny_hubert")


def load_extractor(kind: str, *, checkpoint: str | os.PathLike | None = None, layer: int | None = None,
                   device: str = "cpu", cmvn: bool = False) -> FeatureExtractor:
    """Build a feature extractor (all output ``(frames, dim)`` at 50 Hz from 16 kHz audio).

    Args:
        kind: ``mfcc`` (39 dims), ``logmel`` (80 dims), ``hubert`` (a real fairseq / spkit.hubert /
            torchaudio checkpoint; trusted files only) or ``tiny_hubert`` (trained by
            ``spkit pretrain-hubert``).
        checkpoint: the weights file; required for ``hubert`` and ``tiny_hubert``.
        layer: 1-based transformer layer; default 6 for ``hubert`` (GSLM), the middle layer for
            ``tiny_hubert``. Not accepted for spectral kinds.
        device: where the transformer runs (outputs are returned on the CPU).
        cmvn: per-utterance mean/variance normalisation of the output (every kind; for the SSL kinds it is
            applied to the chosen layer, see :func:`spkit.features.base.clip_cmvn`).
    """
    if kind in ("mfcc", "logmel"):
        if checkpoint is not None or layer is not None:
            raise ValueError(f"{kind} features take no checkpoint or layer")
        return MFCCExtractor(cmvn=cmvn) if kind == "mfcc" else LogMelExtractor(cmvn=cmvn)
    if kind in ("hubert", "tiny_hubert"):
        if checkpoint is None:
            raise ValueError(f"{kind} features need a checkpoint file")
        if kind == "hubert":
            return HubertExtractor.from_checkpoint(checkpoint, 6 if layer is None else layer, device=device,
                                                   cmvn=cmvn)
        return TinyHubertExtractor.from_checkpoint(checkpoint, layer, device=device, cmvn=cmvn)
    raise ValueError(f"unknown feature kind {kind!r}; choose one of {', '.join(KINDS)}")

"""The one interface every dense feature extractor implements (textlesslib's "dense model")."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

FRAME_RATE = 50
"""Frames per second of every extractor: HuBERT's 20 ms hop, matched by the spectral front ends."""


def num_frames(num_samples: int) -> int:
    """HuBERT-Base frame count for ``num_samples`` at 16 kHz: floor((N - 400) / 320) + 1."""
    return max(0, (num_samples - 400) // 320 + 1)


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps a 16 kHz mono waveform to frame features at :data:`FRAME_RATE`.

    ``extract(wave)``: ``wave`` is ``(samples,)`` float32 at 16 kHz; returns ``(frames, dim)`` with
    ``frames == num_frames(samples)``. ``fingerprint`` identifies the weights and settings, so unit
    caches keyed by it are invalidated when either changes.
    """

    name: str
    dim: int

    @property
    def fingerprint(self) -> str: ...

    def extract(self, wave: torch.Tensor) -> torch.Tensor: ...

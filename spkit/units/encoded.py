"""What every encoder returns: unit streams on HuBERT's 50 Hz frame grid, deduplicated with their durations.

The bottom of :mod:`spkit.units`: :class:`~spkit.units.encoder.SpeechEncoder` (k-means units) and
:class:`~spkit.units.oracle.OracleEncoder` (the oracle topline's phone units) both end with
:func:`encoded_speech`, and the unit files (:mod:`spkit.units.unit_files`) store :func:`dedup`'s output. It
imports nothing of the kit, so both encoders and the unit files build on it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

SAMPLE_RATE = 16_000
"""The rate every encoder reads (:func:`spkit.audio.load_audio` resamples to it)."""

FRAME_RATE = 50
"""Units (frames) per second: HuBERT's 20 ms hop."""


def dedup(units: Sequence[int]) -> tuple[list[int], list[int]]:
    """Collapse runs of repeats: ``[5, 5, 7, 5]`` -> ``([5, 7, 5], [2, 1, 1])`` (durations in frames)."""
    out: list[int] = []
    durations: list[int] = []
    for u in units:
        u = int(u)
        if out and out[-1] == u:
            durations[-1] += 1
        else:
            out.append(u)
            durations.append(1)
    return out, durations


@dataclass
class EncodedSpeech:
    """Aligned streams of one clip.

    Attributes:
        units: ``(n,)`` int64 unit ids, deduplicated (with ``deduplicate=False``: one per 20 ms frame).
        durations: ``(n,)`` int64 frames (20 ms each) covered by each unit; sums to the clip's frame count.
        features: ``(frames, dim)`` float32 dense features the units were quantized from, or None.
    """

    units: Tensor
    durations: Tensor
    features: Tensor | None = None

    @property
    def frame_units(self) -> Tensor:
        """``(frames,)`` one unit per 20 ms frame (``units`` repeated by ``durations``)."""
        return self.units.repeat_interleave(self.durations)

    @property
    def n_frames(self) -> int:
        return int(self.durations.sum())


def encoded_speech(frame_units: Any, deduplicate: bool = True,
                   features: Tensor | None = None) -> EncodedSpeech:
    """Per-frame units ``(frames,)`` -> :class:`EncodedSpeech`: deduplicated with durations, or one frame
    each. The one conversion every encoder (:class:`SpeechEncoder`, the oracle's) ends with."""
    frame_units = torch.as_tensor(frame_units, dtype=torch.long).reshape(-1)
    if not deduplicate:
        return EncodedSpeech(frame_units, torch.ones_like(frame_units), features)
    units, durations = dedup(frame_units.tolist())
    return EncodedSpeech(torch.tensor(units, dtype=torch.long), torch.tensor(durations, dtype=torch.long),
                         features)

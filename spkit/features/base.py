"""The one interface every dense feature extractor implements (textlesslib's "dense model")."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

FRAME_RATE = 50
"""Frames per second of every extractor: HuBERT's 20 ms hop, matched by the spectral front ends."""

WINDOW = 400
"""Samples seen by one frame at 16 kHz (25 ms): HuBERT-Base's conv receptive field."""

HOP = 320
"""Samples between frames at 16 kHz (20 ms): HuBERT-Base's conv stride."""


def num_frames(num_samples: int) -> int:
    """HuBERT-Base frame count for ``num_samples`` at 16 kHz: floor((N - 400) / 320) + 1."""
    return max(0, (num_samples - WINDOW) // HOP + 1)


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


@runtime_checkable
class LayeredExtractor(FeatureExtractor, Protocol):
    """A transformer extractor whose output layer can be chosen (HuBERT, tiny HuBERT).

    ``layer`` is 1-based (fairseq's ``output_layer``); ``extract_layers(wave)`` returns all layers at
    once as ``(num_layers, frames, dim)`` so the pipeline can pick the layer whose units score best;
    ``with_layer(k)`` returns an extractor on the same weights that outputs layer ``k``.
    """

    layer: int
    num_layers: int

    def extract_layers(self, wave: torch.Tensor) -> torch.Tensor: ...

    def with_layer(self, layer: int) -> LayeredExtractor: ...


def clip_cmvn(feats: torch.Tensor, frames: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Per-clip mean/variance normalisation of ``(batch, frames, dim)`` features, each dim over the clip's
    own ``frames`` ``(batch,)`` valid frames (default: all); padding frames stay zero.

    A normalisation of the SSL layer before k-means: it takes away what is constant over a clip (speaker,
    channel), so clusters follow the sounds. ``eps`` keeps near-constant dims finite.
    """
    B, T, _ = feats.shape
    if T == 0:
        return feats
    n = torch.full((B,), T) if frames is None else frames.to(torch.long).cpu()
    keep = (torch.arange(T)[None, :] < n[:, None]).to(feats.dtype)[..., None]
    count = keep.sum(1, keepdim=True).clamp_min(1.0)
    mean = (feats * keep).sum(1, keepdim=True) / count
    var = ((feats - mean).pow(2) * keep).sum(1, keepdim=True) / count
    return (feats - mean) / (var.sqrt() + eps) * keep


def check_wave(wave: torch.Tensor) -> torch.Tensor:
    """Return ``wave`` as float32 ``(samples,)``; raise ``ValueError`` for any other shape."""
    if not isinstance(wave, torch.Tensor):
        wave = torch.as_tensor(wave)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (samples,), got {tuple(wave.shape)}")
    return wave.float()


def check_layer(layer: int, num_layers: int, source: str | os.PathLike) -> int:
    """Validate a 1-based layer index against ``num_layers``; the error names ``source``."""
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= num_layers:
        raise ValueError(f"{source}: layer {layer!r} out of range: the model has layers 1..{num_layers}")
    return layer


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """Hex SHA-256 prefix of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:length]


def state_digest(module: torch.nn.Module, length: int = 16) -> str:
    """Hex SHA-256 prefix of a model's parameters and buffers (names, shapes, dtypes, values).

    Fingerprints use this rather than a file hash: the same weights give the same fingerprint
    whatever else the file holds (optimizer state, timings) or which format it is in.
    """
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]


def extract_all_layers(extractor: LayeredExtractor, waves: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Features of every layer for each clip: ``[(num_layers, frames_i, dim)]``, one per wave.

    Feed ``result[i][k - 1]`` for layer ``k`` to unit metrics (e.g. PNMI vs phones) to choose a layer.
    """
    return [extractor.extract_layers(w) for w in waves]

"""Spectral front ends at HuBERT's frame rate: MFCC (+deltas) and log-mel, via torchaudio.transforms.

Both use a 25 ms window (400 samples) and a 20 ms hop (320 samples) at 16 kHz with **no centre
padding**, so the frame count is exactly :func:`~spkit.features.base.num_frames` (HuBERT-Base's
``floor((N - 400) / 320) + 1``) and frame ``i`` covers samples ``[320 i, 320 i + 400)``, the same
span as HuBERT's frame ``i``. A clip shorter than 400 samples gives ``(0, dim)``.
"""

from __future__ import annotations

import hashlib

import torch
import torchaudio

from spkit.audio import SAMPLE_RATE
from spkit.features.base import HOP, WINDOW, check_wave, clip_cmvn

_LOG_FLOOR = 1e-6  # keeps log() finite on digital silence


def cmvn(feats: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance mean and variance normalisation of ``(frames, dim)`` (each dim to 0 mean, 1 std)."""
    return clip_cmvn(feats[None], eps=eps)[0]


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class LogMelExtractor:
    """Log mel filterbank energies ``(frames, n_mels)`` at 50 Hz from a 16 kHz waveform.

    Args:
        n_mels: mel bands (80, as the tiny HuBERT's front end).
        cmvn: normalise each utterance's features to zero mean and unit variance per band.
    """

    name = "logmel"

    def __init__(self, n_mels: int = 80, cmvn: bool = False):
        self.n_mels = int(n_mels)
        self.dim = self.n_mels
        self.cmvn = bool(cmvn)
        self.transform = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=WINDOW, win_length=WINDOW, hop_length=HOP,
            n_mels=self.n_mels, center=False, power=2.0)

    @property
    def fingerprint(self) -> str:
        return f"logmel-{_fingerprint('logmel', 1, self.n_mels, self.cmvn, WINDOW, HOP)}"

    def extract_batch(self, waves: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` -> ``(batch, frames, n_mels)``; CMVN (if on) per clip."""
        if waves.shape[-1] < WINDOW:
            return waves.new_zeros(waves.shape[0], 0, self.dim)
        feats = torch.log(self.transform(waves.float()) + _LOG_FLOOR).transpose(1, 2)
        return torch.stack([cmvn(f) for f in feats]) if self.cmvn else feats

    def extract(self, wave: torch.Tensor) -> torch.Tensor:
        """``(samples,)`` at 16 kHz -> ``(num_frames(samples), n_mels)``."""
        return self.extract_batch(check_wave(wave)[None])[0]


class MFCCExtractor:
    """13 MFCCs + deltas + delta-deltas = 39 dims at 50 Hz (HuBERT iteration 1's k-means input).

    Args:
        n_mfcc: cepstral coefficients (13).
        n_mels: mel bands the cepstrum is taken over (23, Kaldi's MFCC default).
        deltas: append first and second order deltas (window of 5 frames), tripling the dim.
        cmvn: normalise each utterance's features to zero mean and unit variance per dim.
    """

    name = "mfcc"

    def __init__(self, n_mfcc: int = 13, n_mels: int = 23, deltas: bool = True, cmvn: bool = False):
        self.n_mfcc, self.n_mels, self.deltas, self.cmvn = int(n_mfcc), int(n_mels), bool(deltas), bool(cmvn)
        self.dim = self.n_mfcc * (3 if self.deltas else 1)
        self.transform = torchaudio.transforms.MFCC(
            sample_rate=SAMPLE_RATE, n_mfcc=self.n_mfcc, log_mels=True,
            melkwargs={"n_fft": WINDOW, "win_length": WINDOW, "hop_length": HOP,
                       "n_mels": self.n_mels, "center": False})

    @property
    def fingerprint(self) -> str:
        parts = ("mfcc", 1, self.n_mfcc, self.n_mels, self.deltas, self.cmvn, WINDOW, HOP)
        return f"mfcc-{_fingerprint(*parts)}"

    def extract_batch(self, waves: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` -> ``(batch, frames, dim)``; CMVN (if on) per clip."""
        if waves.shape[-1] < WINDOW:
            return waves.new_zeros(waves.shape[0], 0, self.dim)
        mfcc = self.transform(waves.float())  # (batch, n_mfcc, frames)
        if self.deltas:
            d1 = torchaudio.functional.compute_deltas(mfcc)
            d2 = torchaudio.functional.compute_deltas(d1)
            mfcc = torch.cat([mfcc, d1, d2], dim=1)
        feats = mfcc.transpose(1, 2)
        return torch.stack([cmvn(f) for f in feats]) if self.cmvn else feats

    def extract(self, wave: torch.Tensor) -> torch.Tensor:
        """``(samples,)`` at 16 kHz -> ``(num_frames(samples), dim)``."""
        return self.extract_batch(check_wave(wave)[None])[0]

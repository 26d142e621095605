"""Audio I/O: read and write WAV/FLAC with soundfile, resample to 16 kHz, downmix, validate.

torchaudio's own ``load``/``save`` need TorchCodec and FFmpeg, which are not available here, so
every audio read in spkit goes through :func:`load_audio`. Errors name the file and the problem.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
import torchaudio

from spkit.errors import UserError
from spkit.io import atomic_path

SAMPLE_RATE = 16_000
"""The rate every model in spkit works at (HuBERT, GSLM)."""

MIN_SAMPLES = 400
"""One HuBERT frame needs 400 samples (25 ms at 16 kHz); anything shorter yields no units."""


class AudioError(UserError, ValueError):
    """A clip that cannot be used: unreadable, empty, too short, or with NaN/inf samples."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path or '<array>'}: {problem}")


class LowSampleRateWarning(UserWarning):
    """Audio recorded below 16 kHz: upsampling adds no content above its Nyquist frequency."""


_WARNED_RATES: set[int] = set()  # warn once per rate, not once per clip of an 8 kHz corpus


def warn_low_rate(path: str | os.PathLike, sample_rate: int) -> None:
    """Warn (once per rate) that ``path`` is below :data:`SAMPLE_RATE` and will be upsampled."""
    if sample_rate < SAMPLE_RATE and sample_rate not in _WARNED_RATES:
        _WARNED_RATES.add(sample_rate)
        warnings.warn(f"{path}: {sample_rate} Hz audio is upsampled to {SAMPLE_RATE} Hz; the models expect "
                      f"speech recorded at {SAMPLE_RATE} Hz or more, so results may suffer (warned once per "
                      "rate)", LowSampleRateWarning, stacklevel=3)


@functools.lru_cache(maxsize=32)
def _resampler(orig_sr: int, new_sr: int) -> torchaudio.transforms.Resample:
    # A reused Resample is ~30x cheaper per clip than torchaudio.functional.resample.
    return torchaudio.transforms.Resample(orig_sr, new_sr)


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Resample ``wave`` of shape ``(..., samples)`` from ``orig_sr`` to ``new_sr`` Hz."""
    if orig_sr == new_sr:
        return wave
    return _resampler(int(orig_sr), int(new_sr))(wave.float())


def validate(wave: torch.Tensor, path: str | os.PathLike | None = None,
             min_samples: int = MIN_SAMPLES) -> torch.Tensor:
    """Check a mono ``(samples,)`` waveform; raise :class:`AudioError` naming ``path`` if unusable."""
    if wave.ndim != 1:
        raise AudioError(path, f"expected a mono waveform of shape (samples,), got {tuple(wave.shape)}")
    if wave.numel() == 0:
        raise AudioError(path, "empty clip (0 samples)")
    if not torch.isfinite(wave).all():
        raise AudioError(path, "contains NaN or infinite samples")
    if wave.numel() < min_samples:
        raise AudioError(path, f"too short: {wave.numel()} samples at {SAMPLE_RATE} Hz, "
                               f"need at least {min_samples}")
    return wave


def to_mono(data: np.ndarray) -> np.ndarray:
    """Downmix ``(samples, channels)`` to ``(samples,)`` by averaging the channels."""
    return data.mean(axis=1) if data.ndim == 2 else data


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
               min_samples: int = MIN_SAMPLES) -> torch.Tensor:
    """Read a WAV/FLAC file as a mono float32 waveform ``(samples,)`` at ``sample_rate`` Hz.

    Stereo is downmixed, other rates are resampled (a rate below 16 kHz warns, once per rate:
    :class:`LowSampleRateWarning`). Raises :class:`AudioError` (naming the file)
    for a missing or unreadable file, an empty or too-short clip, or NaN/inf samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(path, f"unreadable audio ({type(e).__name__}: {e})") from e
    wave = torch.from_numpy(np.ascontiguousarray(to_mono(data)))
    if wave.numel() == 0:
        raise AudioError(path, "empty clip (0 samples)")
    if not torch.isfinite(wave).all():
        raise AudioError(path, "contains NaN or infinite samples")
    warn_low_rate(path, sr)
    wave = resample(wave, sr, sample_rate)
    return validate(wave, path, min_samples)


def trim_silence(wave: torch.Tensor, top_db: float = 40.0, margin_s: float = 0.2,
                 sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``(samples,)`` without its leading and trailing silence, keeping ``margin_s`` of it on each side.

    Silence is what :func:`librosa.effects.trim` calls so: 25 ms frames (10 ms hop) more than ``top_db``
    below the clip's loudest frame. A clip with no such edges comes back unchanged, an all-silent one too.
    (The first call in a fresh environment spends ~20 s compiling librosa's numba code; it is cached after.)
    """
    x = wave.detach().cpu().numpy().astype(np.float32, copy=False)
    if x.size == 0 or not np.any(x):
        return wave
    frame, hop = int(0.025 * sample_rate), int(0.010 * sample_rate)
    _, (start, end) = librosa.effects.trim(x, top_db=top_db, frame_length=frame, hop_length=hop)
    margin = int(margin_s * sample_rate)
    return wave[max(0, int(start) - margin): min(x.size, int(end) + margin)]


def audio_info(path: str | os.PathLike) -> sf._SoundFileInfo:
    """soundfile's header info (rate, frames, channels) without reading the samples."""
    try:
        return sf.info(str(path))
    except Exception as e:
        raise AudioError(path, f"unreadable audio ({type(e).__name__}: {e})") from e


def save_audio(path: str | os.PathLike, wave: torch.Tensor | np.ndarray,
               sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> Path:
    """Write a mono ``(samples,)`` waveform atomically as WAV or FLAC (chosen by the suffix).

    Samples are clipped to [-1, 1]. The file appears complete or not at all.
    """
    path = Path(path)
    data = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    if data.ndim != 1:
        raise AudioError(path, f"expected a mono waveform (samples,), got shape {data.shape}")
    data = np.clip(data.astype(np.float32), -1.0, 1.0)
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(path, "unsupported extension: use .wav or .flac")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sample_rate, subtype=subtype, format=fmt)
    return path

"""Noises and channel effects for the embedded corpora, all made here (no downloads).

Every function takes a ``numpy.random.Generator`` and returns float32 ``(samples,)`` arrays at the
given sample rate (16 kHz in spkit), so the same generator state gives the same samples.
Kinds: white, pink (1/f), brown (1/f^2), babble (a mix of other synthesized speech), hum (mains
hum with harmonics and fan noise), tap (band-passed, modulated noise, like running water).
Channel effects: a synthetic room reverb and a random spectral tilt/band limit.
"""

from __future__ import annotations

import numpy as np

NOISE_KINDS = ("white", "pink", "brown", "babble", "hum", "tap")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _normalize(x: np.ndarray) -> np.ndarray:
    r = _rms(x)
    return (x / r).astype(np.float32) if r > 0 else x.astype(np.float32)


def colored(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown); unit RMS, ``(n,)``."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0  # no DC blow-up
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0
    return _normalize(np.fft.irfft(spec, n))


def hum(n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Mains hum (50 or 60 Hz and random harmonics) with slow wobble and a little fan noise."""
    t = np.arange(n) / sample_rate
    f0 = float(rng.choice([50.0, 60.0])) * (1 + rng.uniform(-0.01, 0.01))
    x = np.zeros(n)
    for h in range(1, 9):
        x += rng.uniform(0, 1) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
    wobble = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t)
    return _normalize(x * wobble + 0.3 * colored(n, rng, 1.5))


def tap(n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Band-passed white noise with fast random modulation, like a running tap or shower."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    lo, hi = rng.uniform(300, 1500), rng.uniform(3000, 7500)
    spec *= np.exp(-0.5 * (np.log(np.maximum(f, 1) / np.sqrt(lo * hi)) / np.log(hi / lo)) ** 2)
    x = np.fft.irfft(spec, n)
    mod = colored(n, rng, 2.0)
    return _normalize(x * (1 + 0.3 * np.tanh(mod)))


def babble(bank: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample excerpt of a babble bank (looped when the bank is shorter)."""
    if bank.size == 0:
        raise ValueError("empty babble bank")
    reps = int(np.ceil((n + bank.size) / bank.size))
    start = int(rng.integers(0, bank.size))
    return _normalize(np.tile(bank, reps)[start:start + n])


def make_noise(kind: str, n: int, rng: np.random.Generator, sample_rate: int,
               babble_bank: np.ndarray | None = None) -> np.ndarray:
    """``n`` samples of noise of ``kind`` (one of :data:`NOISE_KINDS`), unit RMS."""
    if kind == "white":
        return colored(n, rng, 0.0)
    if kind == "pink":
        return colored(n, rng, 1.0)
    if kind == "brown":
        return colored(n, rng, 2.0)
    if kind == "hum":
        return hum(n, rng, sample_rate)
    if kind == "tap":
        return tap(n, rng, sample_rate)
    if kind == "babble":
        if babble_bank is None:
            raise ValueError("babble noise needs a babble bank")
        return babble(babble_bank, n, rng)
    raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")


def mix_babble_bank(utterances: list[np.ndarray], seconds: float, sample_rate: int,
                    rng: np.random.Generator, talkers: int = 5) -> np.ndarray:
    """Sum ``talkers`` streams of concatenated utterances into a ``(seconds*rate,)`` babble bank."""
    n = int(seconds * sample_rate)
    bank = np.zeros(n, np.float64)
    for _ in range(talkers):
        stream = np.zeros(n, np.float64)
        pos = int(rng.integers(0, sample_rate // 2))
        while pos < n:
            u = utterances[int(rng.integers(0, len(utterances)))]
            u = u / max(_rms(u), 1e-6) * rng.uniform(0.5, 1.5)
            take = min(u.size, n - pos)
            stream[pos:pos + take] += u[:take]
            pos += take + int(rng.integers(0, sample_rate // 4))
        bank += stream
    return _normalize(bank)


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float, speech_rms: float) -> np.ndarray:
    """``speech + noise`` with the noise scaled to ``snr_db`` below ``speech_rms`` (the RMS of the
    speech itself, measured before padding, so silence around a word does not change the SNR)."""
    gain = speech_rms / max(_rms(noise), 1e-12) * 10 ** (-snr_db / 20)
    return (speech + gain * noise).astype(np.float32)


def reverb(wave: np.ndarray, rng: np.random.Generator, sample_rate: int,
           rt60_range: tuple[float, float] = (0.15, 0.7)) -> np.ndarray:
    """Convolve with a synthetic room impulse response: a direct path at t=0 followed by
    exponentially decaying noise (RT60 drawn from ``rt60_range``). Output has the input's length
    and RMS; the direct path at t=0 keeps the alignments valid."""
    rt60 = rng.uniform(*rt60_range)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * rng.uniform(0.2, 0.6)
    rir[: int(0.002 * sample_rate)] = 0.0  # early reflections arrive after the direct path
    rir[0] = 1.0
    m = wave.size + n - 1
    out = np.fft.irfft(np.fft.rfft(wave, m) * np.fft.rfft(rir, m), m)[: wave.size]
    return (out * (_rms(wave) / max(_rms(out), 1e-12))).astype(np.float32)


def tilt(wave: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A random spectral tilt (gain ~ (f/1 kHz)^a, a in [-0.6, 0.4]), sometimes band-limited
    to a telephone-like 300-3400 Hz; RMS is kept."""
    spec = np.fft.rfft(wave)
    f = np.maximum(np.fft.rfftfreq(wave.size, 1 / sample_rate), 20.0)
    spec *= (f / 1000.0) ** rng.uniform(-0.6, 0.4)
    if rng.uniform() < 0.3:
        spec *= 1 / (1 + (300 / f) ** 4) / (1 + (f / 3400) ** 4)
    out = np.fft.irfft(spec, wave.size)
    return (out * (_rms(wave) / max(_rms(out), 1e-12))).astype(np.float32)

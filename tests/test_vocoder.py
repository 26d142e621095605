"""spkit.vocoder: per-unit spectral templates from toy tones, Griffin-Lim lengths, save/load strictness,
and fitting from a run folder's unit files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from spkit.vocoder import (
    FRAME_HOP,
    UnitVocoder,
    VocoderConfig,
    VocoderError,
    expected_frames,
    fit_run_vocoder,
    fit_templates,
    load_run_vocoder,
    load_templates,
    save_templates,
    templates_path,
)

SR = 16_000
TONES = {0: 500.0, 1: 1500.0, 2: 3000.0}  # unit -> the pure tone that "is" that unit
N_UNITS = 4  # unit 3 never occurs: it must fall back to the global mean


def toy_clip(runs: list[tuple[int, int]], seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """A clip made of tone runs ``[(unit, frames), ...]``; its per-frame units, one per 20 ms.

    The wave has ``expected_frames`` == number of unit frames (HuBERT framing: (N - 400) // 320 + 1).
    """
    frame_units = [u for u, n in runs for _ in range(n)]
    n = (len(frame_units) - 1) * FRAME_HOP + 400
    per_sample = np.repeat(np.array(frame_units), FRAME_HOP)
    per_sample = np.concatenate([per_sample, np.full(n - per_sample.size, frame_units[-1])])[:n]
    freqs = np.array([TONES[u] for u in per_sample])
    phase = 2 * np.pi * np.cumsum(freqs) / SR
    noise = np.random.default_rng(seed).standard_normal(n) * 1e-3
    wave = (0.5 * np.sin(phase) + noise).astype(np.float32)
    assert expected_frames(n) == len(frame_units)
    return torch.from_numpy(wave), frame_units


def toy_clips() -> list[tuple[torch.Tensor, list[int]]]:
    return [toy_clip([(0, 10), (1, 6), (2, 8)], 0), toy_clip([(2, 4), (0, 12), (1, 10)], 1)]


def peak_hz(logmag_row: torch.Tensor, cfg: VocoderConfig) -> float:
    return float(torch.argmax(logmag_row)) * cfg.sample_rate / cfg.n_fft


@pytest.fixture(scope="module")
def vocoder() -> UnitVocoder:
    return fit_templates(toy_clips(), N_UNITS)


def test_templates_find_each_units_tone(vocoder: UnitVocoder):
    cfg = vocoder.cfg
    bin_hz = cfg.sample_rate / cfg.n_fft
    for unit, hz in TONES.items():
        assert abs(peak_hz(vocoder.templates[unit], cfg) - hz) <= bin_hz, unit
    assert vocoder.templates.shape == (N_UNITS, cfg.n_bins)
    assert vocoder.counts[3] == 0 and (vocoder.counts[:3] > 0).all()
    # the unseen unit sounds like the average frame, not like silence
    seen_mean = (vocoder.templates[:3] * vocoder.counts[:3, None]).sum(0) / vocoder.counts[:3].sum()
    assert torch.allclose(vocoder.templates[3], seen_mean, atol=1e-4)
    # mean run lengths in frames: unit 0 ran 10 and 12 frames, unit 1 6 and 10, unit 2 8 and 4
    assert vocoder.mean_duration[:3].tolist() == pytest.approx([11.0, 8.0, 6.0])
    assert vocoder.info["clips"] == 2


def test_synthesis_length_follows_durations(vocoder: UnitVocoder):
    units, durations = [0, 2, 1, 0], [3, 1, 7, 2]
    wave = vocoder.synthesize(units, durations, n_iter=8)
    assert wave.shape == (sum(durations) * FRAME_HOP,) and wave.dtype == torch.float32
    assert float(wave.abs().max()) == pytest.approx(0.9, abs=1e-5)
    frames = [0, 0, 0, 2, 1, 1]
    assert vocoder.synthesize_frames(frames, n_iter=4).shape == (len(frames) * FRAME_HOP,)
    default = vocoder.synthesize([0, 1], n_iter=4)  # no durations: mean training durations (11 + 8 frames)
    assert default.shape == (19 * FRAME_HOP,)
    assert vocoder.durations_for([0, 1, 3]) == [11, 8, round(float(vocoder.mean_duration[3]))]


def test_resynthesized_tone_is_at_the_units_frequency(vocoder: UnitVocoder):
    wave = vocoder.synthesize([1], [40], n_iter=32)
    spec = torch.stft(wave, 1024, 256, window=torch.hann_window(1024), return_complex=True).abs().mean(1)
    assert abs(float(torch.argmax(spec)) * SR / 1024 - TONES[1]) < 2 * SR / 1024


def test_same_seed_same_samples(vocoder: UnitVocoder):
    a = vocoder.synthesize([0, 1, 2], [4, 4, 4], n_iter=4, seed=3)
    b = vocoder.synthesize([0, 1, 2], [4, 4, 4], n_iter=4, seed=3)
    c = vocoder.synthesize([0, 1, 2], [4, 4, 4], n_iter=4, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_requests_are_errors(vocoder: UnitVocoder):
    with pytest.raises(VocoderError, match="outside"):
        vocoder.synthesize([0, N_UNITS], [1, 1])
    with pytest.raises(VocoderError, match="durations"):
        vocoder.synthesize([0, 1], [1])
    with pytest.raises(VocoderError, match="at least one"):
        vocoder.synthesize([0, 1], [1, 0])
    with pytest.raises(VocoderError, match="empty"):
        vocoder.synthesize([], [])
    with pytest.raises(VocoderError, match=r"\[0, 4\)"):
        fit_templates([(toy_clip([(0, 3)])[0], [7, 7, 7])], N_UNITS)
    with pytest.raises(VocoderError, match="no training frames"):
        fit_templates([], N_UNITS)
    with pytest.raises(VocoderError, match="divide"):
        VocoderConfig(hop_length=150)


def test_save_load_round_trip_and_strictness(vocoder: UnitVocoder, tmp_path):
    path = save_templates(tmp_path / "vocoder" / "templates.pt", vocoder)
    back = load_templates(path)
    assert torch.equal(back.templates, vocoder.templates) and torch.equal(back.counts, vocoder.counts)
    assert torch.equal(back.mean_duration, vocoder.mean_duration) and back.cfg == vocoder.cfg
    assert back.info == vocoder.info
    assert torch.equal(back.synthesize([0, 1], [2, 2], n_iter=4),
                       vocoder.synthesize([0, 1], [2, 2], n_iter=4))
    assert not list(path.parent.glob("*.tmp*")), "atomic write left a temp file"

    state = vocoder.state()
    torch.save({**state, "extra": 1}, tmp_path / "extra.pt")
    with pytest.raises(VocoderError, match="unexpected keys \\['extra'\\]"):
        load_templates(tmp_path / "extra.pt")
    torch.save({k: v for k, v in state.items() if k != "counts"}, tmp_path / "missing.pt")
    with pytest.raises(VocoderError, match="missing keys \\['counts'\\]"):
        load_templates(tmp_path / "missing.pt")
    torch.save({**state, "templates": state["templates"][:, :10]}, tmp_path / "shape.pt")
    with pytest.raises(VocoderError, match="inconsistent shapes"):
        load_templates(tmp_path / "shape.pt")
    torch.save({**state, "format": "other"}, tmp_path / "format.pt")
    with pytest.raises(VocoderError, match=r"not a spkit\.vocoder"):
        load_templates(tmp_path / "format.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(VocoderError, match=r"junk\.pt: unreadable"):
        load_templates(tmp_path / "junk.pt")
    with pytest.raises(VocoderError, match="no such templates file"):
        load_templates(tmp_path / "absent.pt")


def _toy_run(root) -> None:
    """A run folder with ``units/km.bin`` and one corpus's ``train.txt`` / ``train.jsonl``."""
    from spkit.units.encoder import dedup
    from spkit.units.kmeans import KMeansModel
    from spkit.units.quantize import format_line

    KMeansModel(np.eye(N_UNITS)).save(root / "units" / "km.bin")
    d = root / "units" / "toy"
    d.mkdir(parents=True)
    lines, records = [], []
    for i, (wave, units) in enumerate(toy_clips()):
        path = root / "audio" / f"c{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wave.numpy(), SR, subtype="FLOAT")  # exact samples: same templates as in memory
        lines.append(format_line(f"toy/c{i}", units))
        dd, dur = dedup(units)
        records.append({"uid": f"toy/c{i}", "path": str(path), "units": dd, "durations": dur})
    # a record pointing at a long file (a slice of it, offset unknown): must be skipped, not misaligned
    long_path = root / "audio" / "long.wav"
    sf.write(long_path, np.zeros(SR * 3, np.float32), SR)
    lines.append(format_line("toy/long", [3] * 49))
    records.append({"uid": "toy/long", "path": str(long_path), "units": [3], "durations": [49]})
    (d / "train.txt").write_text("".join(lines))
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_fit_from_run_folder(tmp_path, vocoder: UnitVocoder):
    _toy_run(tmp_path)
    fitted = fit_run_vocoder(tmp_path, progress=False)
    assert templates_path(tmp_path).is_file()
    assert fitted.info["corpora"] == ["toy"] and fitted.info["skipped"] == 1 and fitted.info["clips"] == 2
    assert fitted.counts[3] == 0  # the long clip's unit 3 was not credited
    assert torch.allclose(fitted.templates, vocoder.templates, atol=1e-4)  # the same two clips
    again = load_run_vocoder(tmp_path)
    assert torch.equal(again.templates, fitted.templates)
    with pytest.raises(VocoderError, match="no such templates file"):
        load_run_vocoder(tmp_path / "elsewhere", fit_if_missing=False)
    with pytest.raises(VocoderError, match=r"needs train\.txt"):
        fit_run_vocoder(tmp_path, corpora=["absent"], save=False, progress=False)

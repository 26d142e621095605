"""Audio I/O: formats, resampling, downmixing and every bad input named in the foundation issue."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from spkit.audio import SAMPLE_RATE, AudioError, load_audio, save_audio, validate
from spkit.io import atomic_path, read_json, sweep_temporaries, torch_save, write_json


def tone(seconds: float, sr: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_roundtrip_16k(tmp_path, suffix):
    wave = tone(0.5, SAMPLE_RATE)
    path = save_audio(tmp_path / f"a{suffix}", torch.from_numpy(wave))
    back = load_audio(path)
    assert back.dtype == torch.float32 and back.shape == (8000,)
    assert torch.allclose(back, torch.from_numpy(wave), atol=1 / 2**14)  # 16-bit PCM


def test_resamples_other_rates(tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0, 22050, 300.0), 22050)
    wave = load_audio(tmp_path / "a.wav")
    assert wave.shape == (16000,)
    # The tone keeps its frequency: the spectrum peaks at 300 Hz.
    spec = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spec) * SAMPLE_RATE / 16000 - 300.0) <= 1.0


def test_downmixes_stereo(tmp_path):
    left, right = tone(0.5, SAMPLE_RATE), np.zeros(8000, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    wave = load_audio(tmp_path / "s.wav")
    assert wave.shape == (8000,)
    assert torch.allclose(wave, torch.from_numpy(left) / 2, atol=1e-6)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: no such file"):
        load_audio(tmp_path / "nope.wav")


def test_unreadable_file(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage that is not a wave file")
    with pytest.raises(AudioError, match=r"corrupt\.wav: unreadable audio"):
        load_audio(bad)


def test_empty_clip(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"empty\.wav: empty clip"):
        load_audio(tmp_path / "empty.wav")


def test_too_short_clip(tmp_path):
    sf.write(tmp_path / "short.wav", tone(0.01, SAMPLE_RATE), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"short\.wav: too short: 160 samples"):
        load_audio(tmp_path / "short.wav")


def test_nan_samples(tmp_path):
    data = tone(0.1, SAMPLE_RATE)
    data[10] = np.nan
    sf.write(tmp_path / "nan.wav", data, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: contains NaN or infinite samples"):
        load_audio(tmp_path / "nan.wav")


def test_validate_rejects_non_mono():
    with pytest.raises(AudioError, match="mono"):
        validate(torch.zeros(2, 1000))


def test_save_rejects_unknown_suffix(tmp_path):
    with pytest.raises(AudioError, match=r"x\.mp3: unsupported extension"):
        save_audio(tmp_path / "x.mp3", torch.zeros(1000))


def test_atomic_write_keeps_previous_file_on_failure(tmp_path):
    target = tmp_path / "ckpt.pt"
    torch_save({"step": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a checkpoint")
        raise RuntimeError("interrupted")
    assert torch.load(target)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary left behind


def test_json_roundtrip_and_errors(tmp_path):
    write_json(tmp_path / "r.json", {"a": [1, 2]})
    assert read_json(tmp_path / "r.json") == {"a": [1, 2]}
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match=r"none\.json: no such file"):
        read_json(tmp_path / "none.json")


def test_a_killed_writers_temporaries_are_swept_and_a_live_ones_kept(tmp_path):
    """A SIGKILL between mkstemp and the rename leaves ``.NAME.PID-XXXXXXXX.tmpSUFFIX``; the sweep at the
    start of a resumed job removes those of dead writers only."""
    import subprocess
    import sys

    from spkit.errors import UserError

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    (tmp_path / "sub").mkdir()
    orphan = tmp_path / "sub" / f".results.json.{pid}-ab12_x9z.tmp.json"
    orphan.write_text('{"half": ')
    with atomic_path(tmp_path / "ckpt.pt") as live:  # this process's temporary, mid-write
        live.write_bytes(b"partial")
        assert live.name.startswith(f".ckpt.pt.{os.getpid()}-") and live.name.endswith(".tmp.pt")
        assert sweep_temporaries(tmp_path) == [orphan]
        assert live.exists() and not orphan.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["ckpt.pt", "sub"]
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(UserError, match=r"bad\.json: not valid JSON"):  # the CLI: one line, exit 2
        read_json(tmp_path / "bad.json")

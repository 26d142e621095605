"""User errors on the command line: exit status 2, one line naming the problem (and the file), no traceback,
and nothing run or written before the check."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fixtures_real import write_gslm_kmeans

from spkit import audio
from spkit.cli import main as spkit_main
from spkit.pipeline import RUN_PARAMETERS, notebook_parameters, notebooks_dir
from spkit.ulm.dictionary import UnitDictionary, VocabMismatchError, check_unit_vocabulary

REPO = Path(__file__).resolve().parent.parent


def spkit(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m spkit ARGV`` in a fresh process (so the exit status and stderr are the user's)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "spkit", *argv], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def assert_user_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "Warning" not in ln]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_paper_preset_without_corpus(tmp_path: Path):
    res = spkit("run", "--preset", "paper", "--out", str(tmp_path / "run"))
    assert_user_error(res, "spkit run: error:", "--corpus")
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_missing_corpus_folder(tmp_path: Path):
    missing = tmp_path / "speech_commands_v0.01"
    res = spkit("run", "--preset", "paper", "--out", str(tmp_path / "run"), "--corpus", f"kws={missing}")
    assert_user_error(res, str(missing), "do not exist")
    res = spkit("run", "--preset", "smoke", "--out", str(tmp_path / "run"), "--corpus", f"kwz={tmp_path}")
    assert_user_error(res, "kwz", "unknown corpus name")
    assert not (tmp_path / "run").exists()


def test_unknown_param_is_refused_naming_the_parameters_that_exist(tmp_path: Path, capsys):
    data = tmp_path / "data"
    rc = spkit_main(["run", "--preset", "smoke", "--out", str(tmp_path / "run"), "--data-root", str(data),
                     "--param", "epochz=3", "--param", "seeds=[0]"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "epochz" in err and "seeds" not in err.split("parameters are:")[0]
    declared = err.split("parameters are:")[1]
    assert "epochs" in declared and "n_clusters" in declared and "prompt_length" in declared
    assert not data.exists() and not (tmp_path / "run").exists()  # nothing was synthesized or run
    rc = spkit_main(["run", "--preset", "smoke", "--out", str(tmp_path / "run"), "--param", "preset=paper"])
    assert rc == 2 and "set by spkit run itself" in capsys.readouterr().err


def test_notebook_parameters_are_read_from_the_parameters_cells():
    names = {nb.name: notebook_parameters(nb) for nb in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))}
    assert names["01_unit_discovery.ipynb"][:4] == list(RUN_PARAMETERS)
    unit_discovery = set(names["01_unit_discovery.ipynb"])
    assert {"features", "checkpoint", "kmeans_path", "layer", "n_clusters"} <= unit_discovery
    assert "gslm_checkpoint" in names["02_unit_lm.ipynb"] and "epochs" in names["03_prompt_training.ipynb"]
    assert "n_clusters" not in names["02_unit_lm.ipynb"]


def test_quantizer_that_does_not_match_the_ulm_is_refused(tmp_path: Path):
    km = write_gslm_kmeans(tmp_path / "km.bin", dim=8, n_clusters=20)
    ulm = tmp_path / "hubert100_lm"
    ulm.mkdir()
    UnitDictionary.from_units(range(100), pad_to_multiple=1).save(ulm / "dict.txt")
    res = spkit("run", "--preset", "paper", "--out", str(tmp_path / "run"), "--corpus", f"kws={tmp_path}",
                "--kmeans", str(km), "--ulm", str(ulm))
    assert_user_error(res, str(km), str(ulm / "dict.txt"), "K=20", "100 units")
    assert not (tmp_path / "run").exists()
    # the same sizes pass; a dictionary naming units outside 0..K-1 does not
    check_unit_vocabulary(100, km, UnitDictionary.load(ulm / "dict.txt"), ulm / "dict.txt")
    with pytest.raises(VocabMismatchError, match=r"outside 0\.\.99"):
        check_unit_vocabulary(100, km, UnitDictionary.from_units([*range(99), 150]), "dict.txt")


def test_missing_checkpoint_options(tmp_path: Path, capsys):
    rc = spkit_main(["run", "--preset", "paper", "--out", str(tmp_path / "run"),
                     "--corpus", f"kws={tmp_path}", "--hubert", str(tmp_path / "hubert_base_ls960.pt")])
    assert rc == 2 and "--hubert" in capsys.readouterr().err


def test_other_commands_exit_2_on_missing_inputs(tmp_path: Path, capsys):
    cases = [
        (["train-ulm", "--units-train", str(tmp_path / "train.units"), "--out", str(tmp_path / "ulm")],
         "train.units"),
        (["train-ulm", "--units-train", str(REPO / "README.md"), "--out", str(tmp_path / "ulm"),
          "--config", "huge"], "unknown model size"),
        (["quantize", str(tmp_path), "--features", "mfcc", "--km", str(tmp_path / "km.bin"),
          "--out", str(tmp_path / "u")], "km.bin"),
        (["fit-kmeans", str(tmp_path / "nocorpus"), "--features", "mfcc", "--out", str(tmp_path / "km.bin")],
         "nocorpus"),
        (["fit-kmeans", str(tmp_path), "--out", str(tmp_path / "km.bin")], "needs --checkpoint"),
        (["pretrain-hubert", str(tmp_path / "noaudio"), str(tmp_path / "out")], "noaudio"),
        (["predict", "--run", str(tmp_path / "norun"), "--task", "kws", str(tmp_path / "a.wav")], "norun"),
    ]
    for argv, needle in cases:
        rc = spkit_main(argv)
        err = capsys.readouterr().err
        assert rc == 2, (argv, err)
        assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "ulm").exists() and not (tmp_path / "u").exists()


def test_audio_below_16k_warns_once_per_rate(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(audio, "_WARNED_RATES", set())
    t = np.arange(8000) / 8000
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 8000)
    sf.write(tmp_path / "c.wav", np.zeros(16000, np.float32), 16000)
    with pytest.warns(audio.LowSampleRateWarning, match=r"a\.wav: 8000 Hz audio is upsampled to 16000 Hz"):
        wave = audio.load_audio(tmp_path / "a.wav")
    assert wave.shape == (16000,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio.load_audio(tmp_path / "b.wav")  # the same rate: warned already
        audio.load_audio(tmp_path / "c.wav")  # 16 kHz: no warning

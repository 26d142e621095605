"""``spkit predict`` and :class:`spkit.prompt.predict.Predictor` on a tiny run folder built here."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spkit.artifacts import prompt_files
from spkit.audio import load_audio, resample
from spkit.features.tiny_hubert import FORMAT as TH_FORMAT
from spkit.features.tiny_hubert import VERSION as TH_VERSION
from spkit.features.tiny_hubert import TinyHubert, TinyHubertConfig, TinyHubertExtractor
from spkit.io import torch_save
from spkit.layout import RunLayout
from spkit.prompt import cli
from spkit.prompt.checkpoint import save_prompt
from spkit.prompt.model import PromptConfig, build_prompted
from spkit.prompt.predict import PredictError, Predictor
from spkit.prompt.random_lm import random_ulm
from spkit.prompt.results import RunResult, update_results
from spkit.prompt.tasks import Collator, TaskExample, build_spec
from spkit.prompt.verbalizer import build_verbalizer
from spkit.ulm.dictionary import UnitDictionary
from spkit.ulm.model import UnitLM, ulm_tiny
from spkit.ulm.train import CHECKPOINT_FORMAT
from spkit.units.encoder import SpeechEncoder, save_unit_model
from spkit.units.kmeans import KMeansModel

K = 12
LABELS = ["yes", "no", "up"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors on a shared 2-core machine: one thread avoids oversubscription (10x slower steps)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tone(seconds: float, freq: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _save_ulm(lm: UnitLM, dictionary: UnitDictionary, folder: Path) -> None:
    """RUN/ulm/checkpoint_best.pt in spkit's uLM format (what spkit.ulm.train writes and load_ulm reads)."""
    torch_save({"format": CHECKPOINT_FORMAT, "model": lm.state_dict(), "model_config": lm.cfg.to_dict(),
                "dictionary": dictionary.symbols[4:]}, folder / "checkpoint_best.pt")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A run folder: tiny HuBERT (layer 1) + K=12 k-means + tiny uLM + deep prompts for kws (seeds 0, 1)
    and the random-uLM control; plus audio files."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("run")
    layout = RunLayout.at(root)
    th_cfg = TinyHubertConfig(n_mels=20, dim=16, layers=2, heads=2, ffn_dim=32, conv_pos=4, conv_pos_groups=2,
                              num_classes=K, final_dim=8)
    ckpt = layout.hubert / "iter1.pt"
    torch_save({"format": TH_FORMAT, "version": TH_VERSION, "config": dataclasses.asdict(th_cfg),
                "model": TinyHubert(th_cfg).state_dict()}, ckpt)
    ext = TinyHubertExtractor.from_checkpoint(ckpt, layer=1)
    feats = torch.cat([ext.extract(torch.from_numpy(_tone(1.0, f, 16000))) for f in (200, 700, 1500, 3000)])
    km = KMeansModel(feats[torch.randperm(feats.shape[0])[:K]].double().numpy())
    km.save(layout.kmeans)
    save_unit_model(layout.root, SpeechEncoder(ext, km), "tiny_hubert", ckpt)

    dictionary = UnitDictionary.from_units(range(K))
    lm = UnitLM(ulm_tiny(len(dictionary), dim=32, n_layers=2, n_heads=2, ffn_dim=64))
    _save_ulm(lm, dictionary, layout.ulm)
    g = torch.Generator().manual_seed(0)
    train = [TaskExample(f"t{i}", "", "train", "s", torch.randint(0, K, (10,), generator=g).tolist(),
                         LABELS[i % 3]) for i in range(12)]
    spec = build_spec("kws", {"train": train})
    verb = build_verbalizer("frequency", spec, dictionary, train)
    batch = Collator(spec, verb, dictionary)(train)
    fps = {"extractor": ext.fingerprint, "kmeans": km.fingerprint}
    for seed in (0, 1):
        model = build_prompted(lm, spec, verb, PromptConfig(method="deep_prompt", length=2), init_batch=batch,
                               seed=seed)
        save_prompt(layout.prompt_dir("kws", "deep_prompt", seed) / "prompt.pt", model, fps)
    rand = build_prompted(random_ulm(lm, seed=5), spec, verb, PromptConfig(method="deep_prompt", length=2),
                          init_batch=batch, seed=0)
    save_prompt(layout.prompt_dir("kws", "deep_prompt_random_lm", 0) / "prompt.pt", rand, fps,
                info={"random_lm": True, "random_lm_seed": 5})

    # An ASR prompt: characters verbalized as unit-token codes, decoded by beam search.
    asr_train = [TaskExample(f"a{i}", "", "train", "s", torch.randint(0, K, (10,), generator=g).tolist(),
                             ["go up", "no", "yes no"][i % 3]) for i in range(6)]
    asr_spec = build_spec("asr", {"train": asr_train})
    asr_verb = build_verbalizer("frequency", asr_spec, dictionary, asr_train)
    asr = build_prompted(lm, asr_spec, asr_verb, PromptConfig(method="deep_prompt", length=2), seed=0,
                         init_batch=Collator(asr_spec, asr_verb, dictionary)(asr_train))
    save_prompt(layout.prompt_dir("asr", "deep_prompt", 0) / "prompt.pt", asr, fps)

    audio = root / "audio"
    audio.mkdir()
    sf.write(audio / "a16k.wav", _tone(1.0, 440, 16000), 16000)
    sf.write(audio / "b22k.flac", _tone(1.0, 440, 22050), 22050)
    (audio / "broken.wav").write_bytes(b"RIFF....not audio at all")
    return {"root": root, "audio": audio, "spec": spec, "ext": ext, "km": km}


def _args(run: dict, files: list, **kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    argv = ["--run", str(run["root"]), "--task", kw.pop("task", "kws")]
    for k, v in kw.items():
        argv += [f"--{k}", str(v)]
    return p.parse_args(argv + [str(f) for f in files])


def test_predictor_probabilities(run):
    pred = Predictor(run["root"], "kws", seed=0)
    assert pred.prompt_path.parts[-4:] == ("kws", "deep_prompt", "seed0", "prompt.pt")
    out = pred.predict_file(run["audio"] / "a16k.wav")
    assert set(out.scores) == set(LABELS) and out.label in LABELS
    assert sum(out.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert out.label == max(out.scores, key=out.scores.get)
    assert out.units and all(0 <= u < K for u in out.units)
    assert all(a != b for a, b in zip(out.units, out.units[1:]))  # deduplicated, as the uLM was trained
    # Same input, same answer (load once, predict many).
    assert pred.predict_file(run["audio"] / "a16k.wav").scores == out.scores


def test_resamples_22k_file(run):
    pred = Predictor(run["root"], "kws", seed=0)
    path = run["audio"] / "b22k.flac"
    wave22, sr = sf.read(path, dtype="float32")
    assert sr == 22050
    wave16 = resample(torch.from_numpy(wave22), 22050, 16000)
    assert wave16.shape[0] == 16000
    out = pred.predict_file(path)
    assert out.units == pred.units(wave16)  # the file was brought to 16 kHz before feature extraction
    assert out.scores == pred.predict_wave(load_audio(path)).scores


def test_cli_json_lines_error_line_and_exit_code(run, capsys):
    files = [run["audio"] / "a16k.wav", run["audio"] / "broken.wav", run["audio"] / "missing.wav",
             run["audio"] / "b22k.flac"]
    rc = cli.main(_args(run, files, seed=0))
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 1  # two files failed
    assert [x["file"] for x in lines] == [str(f) for f in files]
    ok = [lines[0], lines[3]]
    for x in ok:
        assert set(x) == {"file", "label", "scores"} and x["label"] in LABELS
        assert sum(x["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    for x, name in ((lines[1], "broken.wav"), (lines[2], "missing.wav")):
        assert set(x) == {"file", "error"} and name in x["error"]
    assert cli.main(_args(run, [run["audio"] / "a16k.wav"], seed=0)) == 0


def test_bad_task_method_seed(run, capsys):
    assert cli.main(_args(run, [run["audio"] / "a16k.wav"], task="kwz")) == 2
    err = capsys.readouterr().err
    assert "unknown task 'kwz'" in err and "kws" in err
    with pytest.raises(PredictError, match="no trained prompts for task 'lid' \\(the run has: asr, kws\\)"):
        Predictor(run["root"], "lid")
    with pytest.raises(PredictError, match="available: deep_prompt, deep_prompt_random_lm"):
        Predictor(run["root"], "kws", method="input_prompt")
    with pytest.raises(PredictError, match=r"no seed 7 \(available: \[0, 1\]\)"):
        Predictor(run["root"], "kws", seed=7)
    assert [(f.task, f.method, f.seed) for f in prompt_files(run["root"])] == [
        ("asr", "deep_prompt", 0), ("kws", "deep_prompt", 0), ("kws", "deep_prompt", 1),
        ("kws", "deep_prompt_random_lm", 0)]
    assert [f.seed for f in prompt_files(run["root"], "kws", "deep_prompt")] == [0, 1]
    assert prompt_files(run["root"], "lid") == []


def test_default_seed_is_best_on_validation_not_test(run, tmp_path):
    assert Predictor(run["root"], "kws").prompt_path.parent.name == "seed0"  # no results yet: the first
    # seed 1 has the better test score, seed 0 the better validation score: validation chooses
    update_results(RunLayout.at(run["root"]).results_json,
                   [RunResult("kws", "deep_prompt", s, v, "accuracy", 10, 1.0, 1.0, extra={"valid": va})
                    for s, v, va in ((0, 0.5, 0.8), (1, 0.9, 0.6))])
    try:
        assert Predictor(run["root"], "kws").prompt_path.parent.name == "seed0"
        update_results(RunLayout.at(run["root"]).results_json,
                       [RunResult("kws", "deep_prompt", 1, 0.4, "accuracy", 10, 1.0, 1.0,
                                  extra={"valid": 0.95})])
        assert Predictor(run["root"], "kws").prompt_path.parent.name == "seed1"
    finally:
        for name in ("results.json", "results.md", "results.json.lock"):
            (run["root"] / name).unlink(missing_ok=True)


def test_random_lm_control_prompt(run):
    pred = Predictor(run["root"], "kws", method="deep_prompt_random_lm")
    out = pred.predict_file(run["audio"] / "a16k.wav")
    assert sum(out.scores.values()) == pytest.approx(1.0, abs=1e-5)


def test_missing_stages_and_wrong_unit_model(run, tmp_path):
    # A run folder with prompts but no unit model / uLM: the error names the missing file.
    bare = RunLayout.at(tmp_path / "bare")
    src = RunLayout.at(run["root"]).prompt_dir("kws", "deep_prompt", 0) / "prompt.pt"
    dst = bare.prompt_dir("kws", "deep_prompt", 0) / "prompt.pt"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes())
    with pytest.raises(PredictError, match=r"unit_model\.json"):
        Predictor(bare.root, "kws")
    with pytest.raises(PredictError, match="no such run folder"):
        Predictor(tmp_path / "nowhere", "kws")
    # A prompt trained on other units is refused (the k-means fingerprint differs).
    other = RunLayout.at(tmp_path / "other")
    for sub in ("hubert", "ulm", "prompts"):
        src_dir = RunLayout.at(run["root"]).root / sub
        for f in src_dir.rglob("*"):
            if f.is_file():
                (other.root / sub / f.relative_to(src_dir)).parent.mkdir(parents=True, exist_ok=True)
                (other.root / sub / f.relative_to(src_dir)).write_bytes(f.read_bytes())
    km = KMeansModel(run["km"].centers + 0.5)
    km.save(other.kmeans)
    save_unit_model(other.root, SpeechEncoder(run["ext"], km), "tiny_hubert", other.hubert / "iter1.pt")
    with pytest.raises(Exception, match="kmeans with fingerprint"):
        Predictor(other.root, "kws", seed=0)


def test_asr_decodes_with_the_runs_own_settings(run):
    """Without --beam/--max-len, predict decodes as the run's evaluation did (``decode`` in eval.json)."""
    eval_json = RunLayout.at(run["root"]).prompt_dir("asr", "deep_prompt", 0) / "eval.json"
    with pytest.raises(PredictError, match=r"eval\.json: no decoding settings recorded.*--beam"):
        Predictor(run["root"], "asr")
    eval_json.write_text(json.dumps({"metric": "wer", "value": 1.0, "decode": {"beam": 3, "max_len": 7}}))
    try:
        pred = Predictor(run["root"], "asr")
        assert (pred.beam, pred.max_len) == (3, 7)
        assert Predictor(run["root"], "asr", beam=1).beam == 1
        assert Predictor(run["root"], "asr", max_len=4).max_len == 4
        rc = cli.main(_args(run, [run["audio"] / "a16k.wav"], task="asr"))
        assert rc == 0
    finally:
        eval_json.unlink()
    assert Predictor(run["root"], "kws", seed=0).beam is None  # classification does not decode


def test_asr_transcript_without_scores(run):
    pred = Predictor(run["root"], "asr", beam=2, max_len=12)
    out = pred.predict_file(run["audio"] / "a16k.wav")
    assert out.scores is None and isinstance(out.label, str)
    assert set(out.label) <= set("go upnyes")  # only the training charset can be decoded
    line = next(pred.predict_lines([run["audio"] / "a16k.wav"]))
    assert line["scores"] is None and line["label"] == out.label

"""Baselines (downstream heads, full fine-tuning, random-uLM control) and the results table."""

from __future__ import annotations

import json
import statistics
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spkit.prompt.downstream import (
    DownstreamClassifier,
    DownstreamCTC,
    DownstreamSpec,
    LayerFeatureCache,
    WeightedLayerSum,
    ctc_greedy_decode,
    train_downstream,
)
from spkit.prompt.random_lm import random_ulm
from spkit.prompt.results import (
    ResultsError,
    RunResult,
    load_results,
    mean_std,
    metric_name,
    render_markdown,
    run_result,
    update_results,
)
from spkit.prompt.tasks import TaskExample, TaskSpec
from spkit.prompt.train import improved
from spkit.ulm.model import UnitLM, ulm_tiny

SR = 16000


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors on a shared 2-core machine: one thread avoids oversubscription (10x slower steps)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------------------------
# A small layered "SSL model": layer 1 is noise, layer 2 a frame spectrum (informative), layer 3 a mix.
# --------------------------------------------------------------------------------------------

class ToyLayeredExtractor:
    name = "toy"
    num_layers = 3
    dim = 16
    layer = 2
    fingerprint = "toy-v1"

    def __init__(self) -> None:
        self.calls = 0
        g = torch.Generator().manual_seed(0)
        self.proj = torch.randn(201, self.dim, generator=g) / 10

    def extract_layers(self, wave: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        spec = torch.stft(wave, n_fft=400, hop_length=320, center=False, return_complex=True,
                          window=torch.hann_window(400)).abs().T  # (frames, 201)
        good = torch.log1p(spec) @ self.proj
        noise = torch.randn(good.shape, generator=torch.Generator().manual_seed(int(wave.numel())))
        return torch.stack([noise, good, 0.5 * (good + noise)])


def _tone(path: Path, freq: float, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    sf.write(path, wave.astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def tone_task(tmp_path_factory) -> dict[str, list[TaskExample]]:
    """A 3-class 'keyword' task: the class is the tone's pitch; clips of different lengths."""
    root = tmp_path_factory.mktemp("tones")
    freqs = {"low": 300.0, "mid": 900.0, "high": 2500.0}
    splits: dict[str, list[TaskExample]] = {}
    n = {"train": 8, "valid": 3, "test": 4}
    for split, count in n.items():
        out = []
        for label, f in freqs.items():
            for i in range(count):
                seed = 1000 * list(n).index(split) + 100 * list(freqs).index(label) + i  # not hash(): salted
                p = _tone(root / f"{split}_{label}_{i}.wav", f * (1 + 0.03 * (i % 3)), 0.3 + 0.1 * (i % 3),
                          seed)
                out.append(TaskExample(f"{split}-{label}-{i}", str(p), split, "spk", [4, 5], label))
        splits[split] = out
    return splits


# --------------------------------------------------------------------------------------------
# Downstream model
# --------------------------------------------------------------------------------------------

def test_weighted_sum_is_a_softmax_mixture():
    ws = WeightedLayerSum(3)
    with torch.no_grad():
        ws.logits.copy_(torch.tensor([0.0, 1.0, -2.0]))
    w = ws.weights
    assert torch.allclose(w.sum(), torch.tensor(1.0)) and (w > 0).all()
    assert torch.allclose(w, torch.softmax(torch.tensor([0.0, 1.0, -2.0]), 0))
    feats = torch.randn(2, 3, 5, 4)
    expected = sum(w[i] * feats[:, i] for i in range(3))
    assert torch.allclose(ws(feats), expected, atol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        ws(torch.randn(2, 4, 5, 4))


def test_classifier_shapes_and_padding_invariance():
    torch.manual_seed(0)
    model = DownstreamClassifier(num_layers=3, dim=8, head_sizes=[4, 5, 2]).eval()
    feats = torch.randn(2, 3, 7, 8)
    lengths = torch.tensor([7, 4])
    out = model(feats, lengths)
    assert [tuple(o.shape) for o in out] == [(2, 4), (2, 5), (2, 2)]
    # Frames past a clip's length do not change its output (mean over valid frames only).
    padded = feats.clone()
    padded[1, :, 4:] = 100.0
    assert all(torch.allclose(a, b) for a, b in zip(out, model(padded, lengths)))
    alone = model(feats[1:, :, :4], torch.tensor([4]))
    assert all(torch.allclose(a[1:], b, atol=1e-6) for a, b in zip(out, alone))
    # The projection is Linear(d, 256) as SUPERB's.
    assert model.proj.out_features == 256


def test_ctc_head_shapes_and_greedy_decode():
    model = DownstreamCTC(num_layers=2, dim=8, vocab_size=6, hidden=16).eval()
    lp = model(torch.randn(3, 2, 9, 8), torch.tensor([9, 5, 1]))
    assert lp.shape == (3, 9, 6)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(3, 9), atol=1e-5)
    # blank=0; repeats collapse unless separated by a blank; frames past the length are ignored.
    path = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0, 3]])
    lp = torch.nn.functional.one_hot(path, 6).float().log()
    assert ctc_greedy_decode(lp, torch.tensor([9])) == [[1, 1, 2, 3]]
    assert ctc_greedy_decode(lp, torch.tensor([4])) == [[1, 1]]


def test_spec_from_task_spec():
    kws = DownstreamSpec.from_task(TaskSpec("kws", "classification", ("yes", "no"), "accuracy", False))
    assert kws.heads == {"label": ["yes", "no"]} and kws.metric == "accuracy"
    ic = DownstreamSpec.from_task(TaskSpec("intent", "classification", ("a|x|none", "b|x|kitchen"),
                                           "accuracy", False, "slots"))
    assert ic.heads == {"action": ["a", "b"], "object": ["x"], "location": ["kitchen", "none"]}
    ex = TaskExample("u", "f.wav", "test", "s", [], "b|x|none")
    assert ic.targets(ex) == [1, 0, 1]
    asr = DownstreamSpec.from_task(TaskSpec("asr", "sequence", ("|", "a", "b"), "cer", True, "chars"))
    assert asr.is_ctc and asr.metric == "cer (lower is better)" and asr.metric_key == "cer"
    ids = asr.targets(TaskExample("u", "f.wav", "test", "s", [], "ab a"))
    assert ids == [2, 3, 1, 2] and asr.text(ids) == "ab a"
    # the training charset ends with <unk>: an unseen character is its target and decodes to U+FFFD
    unk = DownstreamSpec.from_task(TaskSpec("asr", "sequence", ("|", "a", "b", "<unk>"), "cer", True,
                                            "chars"))
    ids = unk.targets(TaskExample("u", "f.wav", "test", "s", [], "az"))
    assert ids == [2, 4] and unk.text(ids) == "a\ufffd" != "az"
    with pytest.raises(Exception, match="not in the training"):
        kws.targets(TaskExample("u", "f.wav", "test", "s", [], "maybe"))


def test_downstream_learns_toy_task_and_caches_features(tone_task, tmp_path):
    spec = DownstreamSpec.from_task(TaskSpec("kws", "classification", ("low", "mid", "high"), "accuracy",
                                             False))
    ext = ToyLayeredExtractor()
    cache = LayerFeatureCache(ext, tmp_path / "cache")
    res = train_downstream(spec, tone_task, ext, seed=0, max_epochs=12, lr=3e-3, batch_size=8, cache=cache,
                           progress=False)
    n_clips = sum(len(v) for v in tone_task.values())
    assert ext.calls == n_clips  # each clip's layers computed once over all epochs
    assert res.value >= 0.9 and res.metric == "accuracy" and res.method == "downstream"
    assert res.num_trainable == sum(p.numel() for p in res.model.parameters())
    # the CPU peak counts the run's own tensors: at least the head's weights, its gradients and Adam's moments
    assert 4 * 4 * res.num_trainable <= res.peak_memory_bytes < 2 ** 34
    assert res.memory_method and res.wall_seconds > 0
    assert 1 <= res.best_epoch <= 12 and res.epochs_run == 12 and res.stop_reason == "max_epochs"
    # the prompt trainer's stopping rule: the best validation metric, then `patience` epochs without a better
    # one
    early = train_downstream(spec, tone_task, ext, seed=0, max_epochs=60, lr=3e-3, batch_size=8, cache=cache,
                             patience=2, progress=False)
    assert (early.stop_reason == "patience" and early.epochs_run == early.best_epoch + 2 < 60) or (
        early.stop_reason == "max_epochs" and early.epochs_run == 60)
    best_e = early.log[early.best_epoch - 1]
    for e in early.log[early.best_epoch:]:  # no later epoch is an improvement under the rule
        assert not improved(e["valid_metric"], e["valid_loss"], best_e["valid_metric"], best_e["valid_loss"],
                            on_metric=True, lower_is_better=False)
    best = max(e["valid_metric"] for e in early.log)
    assert early.valid_value == best == early.log[early.best_epoch - 1]["valid_metric"]
    # an earlier epoch is worse, or as good on the metric with a validation loss no lower (the tie-break)
    best_loss = early.log[early.best_epoch - 1]["valid_loss"]
    assert all(e["valid_metric"] < best or e["valid_loss"] >= best_loss
               for e in early.log[:early.best_epoch - 1])
    assert abs(sum(res.extra["layer_weights"]) - 1) < 1e-3
    # Features are float16 (L, frames, d) and come back from disk for a fresh cache (no recompute).
    feats = cache.get(tone_task["train"][0].path)
    assert feats.dtype == torch.float16 and feats.shape[0] == 3 and feats.shape[2] == 16
    ext2 = ToyLayeredExtractor()
    again = LayerFeatureCache(ext2, tmp_path / "cache").get(tone_task["train"][0].path)
    assert ext2.calls == 0 and torch.equal(again, feats)
    # Same seed -> same numbers.
    res2 = train_downstream(spec, tone_task, ext, seed=0, max_epochs=12, lr=3e-3, batch_size=8, cache=cache,
                            progress=False)
    assert res2.value == res.value
    assert [e["train_loss"] for e in res2.log] == [e["train_loss"] for e in res.log]
    run = res.to_run()
    assert (run.task, run.method, run.seed, run.value) == ("kws", "downstream", 0, res.value)
    assert run.trainable_params == res.num_trainable and run.train_s == res.wall_seconds


def test_downstream_ctc_trains(tone_task, tmp_path):
    # A sequence task on the same clips: the "transcript" spells the pitch class.
    text = {"low": "lo", "mid": "mi", "high": "hi"}
    data = {s: [TaskExample(e.uid, e.path, e.split, e.speaker, e.units, text[e.uid.split("-")[1]])
                for e in v] for s, v in tone_task.items()}
    spec = DownstreamSpec.from_task(TaskSpec("asr", "sequence", ("h", "i", "l", "m", "o"), "cer", True,
                                             "chars"))
    ext = ToyLayeredExtractor()
    res = train_downstream(spec, data, ext, seed=1, max_epochs=40, lr=1e-2, batch_size=8, progress=False)
    assert res.metric == "cer (lower is better)"
    # a learnable case: the CTC head spells the unseen clips' pitch words (an untrained one scores 1.0)
    assert res.value < 0.5 and res.extra["test_wer"] < 1.0, (res.value, res.extra["test_wer"])
    assert res.log[-1]["train_loss"] < res.log[0]["train_loss"]


# --------------------------------------------------------------------------------------------
# The random-uLM control
# --------------------------------------------------------------------------------------------

def test_random_ulm_same_shape_different_weights():
    torch.manual_seed(123)
    pretrained = UnitLM(ulm_tiny(32))
    state = torch.get_rng_state()
    rand = random_ulm(pretrained, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    assert rand.cfg == pretrained.cfg
    a, b = pretrained.state_dict(), rand.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert rand.fingerprint() != pretrained.fingerprint()
    assert not any(p.requires_grad for p in rand.parameters()) and not rand.training
    assert random_ulm(pretrained.cfg, seed=7).fingerprint() == rand.fingerprint()
    assert random_ulm(pretrained.cfg, seed=8).fingerprint() != rand.fingerprint()


# --------------------------------------------------------------------------------------------
# results.json / results.md
# --------------------------------------------------------------------------------------------

def _run(task="kws", method="deep_prompt", seed=0, value=0.5, metric="accuracy", params=1000, **kw):
    return RunResult(task=task, method=method, seed=seed, value=value, metric=metric, trainable_params=params,
                     peak_mem_mb=kw.get("mem", 100.0), train_s=kw.get("s", 10.0))


def test_mean_std_is_sample_std():
    m, s = mean_std([0.1, 0.2, 0.6])
    assert m == pytest.approx(0.3) and s == pytest.approx(statistics.stdev([0.1, 0.2, 0.6]))
    assert s == pytest.approx(float(np.std([0.1, 0.2, 0.6], ddof=1)))
    assert mean_std([0.4]) == (0.4, None)
    assert metric_name("cer", True) == "cer (lower is better)"
    assert metric_name("accuracy", False) == "accuracy"


def test_results_schema_merge_and_markdown(tmp_path):
    path = tmp_path / "run" / "results.json"
    update_results(path, [_run(seed=s, value=v, mem=100 + s, s=10 * (s + 1)) for s, v in
                          [(0, 0.70), (1, 0.72), (2, 0.74)]])
    # A second notebook adds another method and task; a rerun of seed 1 replaces its value.
    update_results(path, [_run(method="downstream", seed=s, value=0.9, params=50_000) for s in range(3)])
    update_results(path, [_run(task="asr", method="deep_prompt", seed=s, value=0.3 + 0.1 * s,
                               metric="cer (lower is better)") for s in range(3)])
    update_results(path, [_run(seed=1, value=0.78)])
    res = json.loads(path.read_text())
    assert res["format"] == "spkit.results" and "ddof=1" in res["std"]
    kws = res["tasks"]["kws"]
    assert kws["metric"] == "accuracy" and kws["lower_is_better"] is False
    dp = kws["methods"]["deep_prompt"]
    assert dp["seeds"] == [0.70, 0.78, 0.74] and dp["seed_ids"] == [0, 1, 2] and dp["n_seeds"] == 3
    assert dp["mean"] == pytest.approx(np.mean([0.70, 0.78, 0.74]))
    assert dp["std"] == pytest.approx(np.std([0.70, 0.78, 0.74], ddof=1))
    # Seed 1's rerun reported 100 MiB and 10 s: means over (100, 100, 102) and (10, 10, 30).
    assert dp["peak_mem_mb"] == pytest.approx(302 / 3) and dp["train_s"] == pytest.approx(50 / 3)
    assert {"mean", "std", "seeds", "trainable_params", "peak_mem_mb", "train_s"} <= set(dp)
    assert kws["methods"]["downstream"]["std"] == pytest.approx(0.0)
    assert res["tasks"]["asr"]["lower_is_better"] is True
    md = (tmp_path / "run" / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method | Params |"))
    assert "KWS" in header and "ASR" in header and header.index("KWS") < header.index("ASR")
    row = next(line for line in md.splitlines() if line.startswith("| deep_prompt |"))
    assert f"{100 * np.mean([0.70, 0.78, 0.74]):.1f} ± {100 * np.std([0.70, 0.78, 0.74], ddof=1):.1f}" in row
    assert "40.0 ± 10.0" in row  # ASR cer 0.3, 0.4, 0.5
    ds_row = next(line for line in md.splitlines() if line.startswith("| downstream |"))
    assert "50.0K" in ds_row and "–" in ds_row  # no ASR downstream run yet
    assert md == render_markdown(load_results(path))


def test_results_settings_and_few_shot(tmp_path):
    """Per-method settings (shared ones, per-seed epochs and stop reasons) and few_shot.<task>.<method>.<n>,
    with ``all`` from the main table; the markdown shows both."""
    def run(seed, value, shots=None, epochs=5, stop="patience", lr=0.05):
        st = {"kind": "prompt", "lr": lr, "max_epochs": 20, "patience": 3, "stop_on": "valid_metric",
              "prompt_form": "deep_prompt", "prompt_length": 4}
        return RunResult("kws", "deep_prompt", seed, value, "accuracy", 10, 1.0, 2.0, shots=shots,
                         extra={"settings": st, "epochs_run": epochs, "stop_reason": stop,
                                "decoder": "greedy_exact", "valid_decoder": "greedy_exact", "valid": value})
    path = tmp_path / "results.json"
    res = update_results(path, [run(0, 0.6, epochs=7), run(1, 0.8, epochs=20, stop="max_epochs"),
                                run(0, 0.3, shots=1), run(1, 0.5, shots=1), run(0, 0.4, shots=5)])
    st = res["tasks"]["kws"]["methods"]["deep_prompt"]["settings"]
    assert st["lr"] == 0.05 and st["prompt_length"] == 4 and st["decoder"] == "greedy_exact"
    assert st["epochs_run"] == [7, 20] and st["stop_reason"] == ["patience", "max_epochs"]
    few = res["few_shot"]["kws"]["deep_prompt"]
    assert few["1"]["mean"] == pytest.approx(0.4)
    assert few["1"]["std"] == pytest.approx(statistics.stdev([.3, .5]))
    assert few["5"]["std"] is None and few["5"]["seeds"] == [0.4]
    assert few["all"]["mean"] == pytest.approx(0.7) and few["all"]["from"] == "tasks.kws.methods.deep_prompt"
    assert [r["seed"] for r in res["tasks"]["kws"]["methods"]["deep_prompt"]["runs"]] == [0, 1]  # not mixed
    md = (tmp_path / "results.md").read_text()
    assert "## Few-shot" in md and "| deep_prompt | 40.0 ± 14.1 | 40.0 (1 seed) | 70.0 ± 14.1 |" in md
    assert "7, 20 / 20 (patience, max_epochs)" in md
    # a seed rerun with another setting: the differing setting is named, not hidden
    res = update_results(path, [run(1, 0.8, lr=0.01)])
    assert res["tasks"]["kws"]["methods"]["deep_prompt"]["settings"]["differ_between_seeds"] == ["lr"]
    with pytest.raises(ResultsError, match="shots"):
        RunResult("kws", "deep_prompt", 0, 0.5, "accuracy", 1, 1.0, 1.0, shots=0)


def test_results_refuse_bad_input(tmp_path):
    path = tmp_path / "results.json"
    update_results(path, [_run()])
    with pytest.raises(ResultsError, match="metric"):
        update_results(path, [_run(seed=1, metric="cer (lower is better)")])
    with pytest.raises(ResultsError, match="fraction"):
        _run(value=1.5)
    assert _run(value=1.5, metric="wer (lower is better)").value == 1.5  # WER may exceed 1
    path.write_text('{"format": "other"}')
    with pytest.raises(ResultsError, match=str(path)):
        update_results(path, [_run()])


def test_results_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "results.json"

    def add(seed: int) -> None:
        update_results(path, [_run(method=f"m{seed % 3}", seed=seed, value=0.1 * (seed % 10))])

    threads = [threading.Thread(target=add, args=(s,)) for s in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    methods = load_results(path)["tasks"]["kws"]["methods"]
    assert sum(m["n_seeds"] for m in methods.values()) == 12


# --------------------------------------------------------------------------------------------
# Full fine-tuning vs prompt tuning on the prompt trainer
# --------------------------------------------------------------------------------------------

def _unit_task(n_per_class: int = 6):
    """A 2-class task whose label is visible in the units (class a: low unit ids, class b: high ones)."""
    from spkit.ulm.dictionary import UnitDictionary

    g = torch.Generator().manual_seed(0)
    data = {}
    for split in ("train", "valid"):
        out = []
        for i in range(n_per_class):
            for label, lo in (("a", 0), ("b", 10)):
                units = (torch.randint(lo, lo + 10, (12,), generator=g)).tolist()
                out.append(TaskExample(f"{split}-{label}-{i}", "", split, "s", units, label))
        data[split] = out
    return data, UnitDictionary.from_units(range(20))


def test_finetune_changes_ulm_weights_prompt_training_does_not():
    from spkit.prompt.finetune import build_finetune, finetune_config, train_finetune
    from spkit.prompt.model import PromptConfig, build_prompted
    from spkit.prompt.tasks import Collator, build_spec
    from spkit.prompt.train import TrainConfig, train
    from spkit.prompt.verbalizer import build_verbalizer

    torch.manual_seed(0)
    data, dictionary = _unit_task()
    lm = UnitLM(ulm_tiny(len(dictionary), dim=32, n_layers=2, n_heads=2, ffn_dim=64))
    spec = build_spec("kws", data)
    verb = build_verbalizer("frequency", spec, dictionary, data["train"])
    collator = Collator(spec, verb, dictionary, max_len=64)
    base = lm.fingerprint()
    base_params = lm.num_parameters()

    cfg = TrainConfig(max_epochs=2, batch_size=4, metric_every=0, patience=0)
    prompted = build_prompted(lm, spec, verb, PromptConfig(method="deep_prompt", length=3, init="random"),
                              seed=0)
    before = prompted.prompt_state()
    report = train(prompted, data, collator, cfg, progress=False)
    assert prompted.lm.fingerprint() == base  # the uLM never changes under prompt tuning
    assert any(not torch.equal(before[k], v) for k, v in prompted.prompt_state().items())
    assert report.num_trainable == (2 * 2 + 1) * 3 * 32 + 32  # key+value prompts, input prompt, separator

    lm2 = UnitLM(ulm_tiny(len(dictionary), dim=32, n_layers=2, n_heads=2, ffn_dim=64))
    lm2.load_state_dict(lm.state_dict())
    ft_cfg = finetune_config(max_epochs=2, batch_size=4, metric_every=0, patience=0, lr=1e-3)
    model, ft_report = train_finetune(lm2, spec, verb, data, collator, ft_cfg, progress=False)
    assert lm2.fingerprint() == base  # the caller's uLM is copied, not modified
    assert model.lm.fingerprint() != base  # every weight trained
    assert model.ulm_fingerprint() == base  # names the uLM fine-tuning started from
    assert ft_report.num_trainable == base_params + 32  # all uLM weights + separator
    row = run_result("kws", "finetune", 0, 0.5, "accuracy", ft_report)
    assert row.trainable_params == ft_report.num_trainable and row.train_s == ft_report.wall_seconds
    assert row.peak_mem_mb == pytest.approx(ft_report.peak_memory_bytes / 2 ** 20)
    assert row.extra["memory_method"] == ft_report.memory_method
    assert all(p.requires_grad for p in model.lm.parameters())
    fresh = build_finetune(lm2, spec, verb)
    changed = [n for n, p in model.lm.named_parameters()
               if not torch.equal(p, dict(fresh.lm.named_parameters())[n])]
    assert len(changed) > 0.9 * len(list(model.lm.parameters()))
    model.train()
    assert not model.lm.training  # dropout off by default, as for the frozen prompted uLM
    with_dropout = build_finetune(lm2, spec, verb, lm_dropout=True).train()
    assert with_dropout.lm.training
    prompted.train()
    assert not prompted.lm.training
    # Same seed -> same fine-tuned weights.
    again, _ = train_finetune(lm2, spec, verb, data, collator, ft_cfg, progress=False)
    assert again.lm.fingerprint() == model.lm.fingerprint()


def test_feature_cache_reads_only_the_window_of_a_silence_clip(tmp_path):
    from spkit.features import load_extractor
    from spkit.prompt.tasks import TaskExample

    class Layered:  # the MFCC extractor seen as a one-layer model
        def __init__(self):
            self.inner, self.num_layers = load_extractor("mfcc"), 1
            self.dim, self.fingerprint = self.inner.dim, self.inner.fingerprint

        def extract_layers(self, wave):
            return self.inner.extract(wave)[None]

    path = tmp_path / "noise.wav"
    sf.write(path, (np.random.default_rng(0).standard_normal(16000 * 10) * 0.1).astype("float32"), 16000)
    cache = LayerFeatureCache(Layered())
    whole = cache.get_example(TaskExample("a", str(path), "train", "s", [1], "_silence_"))
    window = cache.get_example(TaskExample("b", str(path), "train", "s", [1], "_silence_", 2.0, 1.0))
    assert whole.shape[1] == 499 and window.shape[1] == 49
    ref = cache.extractor.inner.extract(torch.from_numpy(sf.read(path, dtype="float32")[0][32000:48000]))
    torch.testing.assert_close(window[0].float(), ref, atol=1e-2, rtol=1e-2)


def test_results_md_says_what_the_units_were_trained_on():
    """results.json's units.targets becomes one plain sentence at the top of results.md (issue: a HuBERT
    trained on synthesizer phone labels is named as such, not as self-supervised)."""
    md = render_markdown({"tasks": {}, "units": {"kind": "ssl_kmeans", "targets": "phone_alignment"}})
    assert "trained on the synthesizer's phone labels" in md and "not self-supervised" in md
    md = render_markdown({"tasks": {}, "units": {"kind": "ssl_kmeans", "targets": "mfcc_kmeans"}})
    assert "self-supervised on k-means clusters of MFCC" in md
    assert "**Units**" not in render_markdown({"tasks": {}, "units": {"kind": "ssl_kmeans"}})

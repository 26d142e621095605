"""Prompt tuning on a frozen tiny uLM with synthetic unit data (spkit.prompt)."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys

import pytest
import torch

from spkit.prompt import (
    Collator,
    PromptConfig,
    PromptFileError,
    TaskError,
    TaskExample,
    TrainConfig,
    beam_search,
    build_prompted,
    build_spec,
    build_verbalizer,
    evaluate,
    greedy_labels,
    load_prompt,
    load_task,
    save_prompt,
    score_labels,
    train,
)
from spkit.prompt.decode import beam_decode, error_rate, label_log_probs, output_length_cap
from spkit.prompt.model import PromptedULM, activation_batch, make_prompt
from spkit.prompt.train import epoch_batches, epoch_order, improved, prepare_task
from spkit.prompt.verbalizer import Verbalizer, usable_tokens
from spkit.ulm import UnitDictionary, UnitLM, ulm_tiny

WORDS = ("yes", "no", "up", "down")
N_UNITS = 16


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def toy(n: int, seed: int, split: str, n_classes: int = 4) -> list[TaskExample]:
    """Class c draws 60% of its units from {4c..4c+3}, the rest uniformly (noise); 8-14 units long."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        c = rng.randrange(n_classes)
        units = [rng.randrange(4 * c, 4 * c + 4) if rng.random() < 0.6 else rng.randrange(N_UNITS)
                 for _ in range(rng.randint(8, 14))]
        out.append(TaskExample(f"{split}{i:04d}", f"/x/{split}{i}.wav", split, f"spk{i % 5}", units,
                               WORDS[c]))
    return out


def toy_data(n_train: int = 320) -> dict[str, list[TaskExample]]:
    return {"train": toy(n_train, 0, "train"), "valid": toy(64, 1, "valid"), "test": toy(128, 2, "test")}


def tiny_lm(seed: int = 0, vocab: int | None = None) -> UnitLM:
    torch.manual_seed(seed)
    d = UnitDictionary.from_units(range(N_UNITS))
    return UnitLM(ulm_tiny(vocab or len(d), dim=64, n_layers=2, n_heads=4, ffn_dim=128))


def setup(method: str = "deep_prompt", verbalizer: str = "frequency", length: int = 8,
          reparam: int | None = None,
          data: dict | None = None, lm_seed: int = 0, task: str = "kws", **vkw):
    data = data or toy_data()
    d = UnitDictionary.from_units(range(N_UNITS))
    lm = tiny_lm(lm_seed)
    spec = build_spec(task, data)
    v = build_verbalizer(verbalizer, spec, d, data["train"], **vkw)
    col = Collator(spec, v, d, max_len=lm.cfg.max_positions)
    model = build_prompted(lm, spec, v, PromptConfig(method=method, length=length, reparam_hidden=reparam),
                           activation_batch(col, data["train"], 64, seed=0), seed=0)
    return model, col, data, d


# ------------------------------------------------------------------------------------------------
# Learning, frozen LM, parameter accounting
# ------------------------------------------------------------------------------------------------

def test_the_stopping_rule_breaks_metric_ties_by_validation_loss():
    # a better metric wins whatever the loss; an equal metric needs a lower loss; higher-is-better and not
    assert improved(0.5, 9.0, 0.4, 1.0, on_metric=True, lower_is_better=False)
    assert not improved(0.3, 0.1, 0.4, 1.0, on_metric=True, lower_is_better=False)
    assert improved(0.4, 0.9, 0.4, 1.0, on_metric=True, lower_is_better=False)  # plateau, loss falling
    assert not improved(0.4, 1.1, 0.4, 1.0, on_metric=True, lower_is_better=False)
    assert improved(0.2, 5.0, 0.3, 1.0, on_metric=True, lower_is_better=True)  # CER
    assert improved(0.1, 2.0, None, None, on_metric=True, lower_is_better=True)
    assert improved(0.1, 0.9, 0.9, 1.0, on_metric=False, lower_is_better=False)  # valid_loss: loss only
    assert not improved(0.9, 1.1, 0.1, 1.0, on_metric=False, lower_is_better=False)


def test_a_metric_plateau_with_falling_loss_is_not_spent_patience(monkeypatch):
    # Majority-class plateau: greedy decoding says one class for several epochs while the loss falls. The old
    # rule spent patience on it (stopped after epoch 2 here); the tie-break keeps training while loss falls.
    monkeypatch.setattr(sys.modules["spkit.prompt.train"], "evaluate", lambda *a, **k: {"value": 0.25})
    model, col, data, _ = setup("deep_prompt")
    res = train(model, data, col, TrainConfig(max_epochs=4, patience=1, lr=5e-2), progress=False)
    losses = [e["valid_loss"] for e in res.log]
    assert all(e["valid_metric"] == 0.25 for e in res.log)
    assert losses == sorted(losses, reverse=True), losses  # the toy task's loss falls every epoch
    assert res.epochs_run == 4 and res.stop_reason == "max_epochs" and res.best_epoch == 4


def test_deep_prompts_learn_toy_task_and_lm_stays_bit_identical():
    model, col, data, _ = setup("deep_prompt")
    before = {k: v.clone() for k, v in model.lm.state_dict().items()}
    untrained = evaluate(model, data["test"], col)["value"]
    # 60 epochs: the </s> target (greedy decoding must stop) makes the toy task slower than labels alone.
    res = train(model, data, col, TrainConfig(max_epochs=60, patience=0, metric_every=10), progress=False)
    ev = evaluate(model, data["test"], col)
    acc = ev["value"]
    assert ev["decoder"] == "greedy_exact"
    assert acc > 0.8 > untrained + 0.2, (acc, untrained)  # chance is 0.25
    assert ev["constrained"]["value"] >= acc - 0.05  # label scoring can only be more lenient, up to ties
    after = model.lm.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in model.lm.parameters())
    assert len(res.log) == 60
    # stop_on="valid_metric" (the default) scores validation every epoch with the test's decoder
    assert all(e["valid_metric"] is not None for e in res.log)
    assert res.best_valid_metric == max(e["valid_metric"] for e in res.log)
    assert res.log[res.best_epoch - 1]["valid_metric"] == res.best_valid_metric
    assert res.epochs_run == 60 and res.stop_reason == "max_epochs"
    assert res.log[-1]["train_loss"] < res.log[0]["train_loss"]
    assert res.best_valid_loss == min(e["valid_loss"] for e in res.log)
    # The CPU peak is a delta of the process's resident set: it can be 0 when earlier tests in this process
    # freed memory that training reused (see spkit.prompt.train); the absolute peak is always there.
    assert 0 <= res.peak_memory_bytes <= res.peak_process_bytes and res.peak_process_bytes > 2 ** 20
    assert res.memory_method and res.wall_seconds > 0


def test_cpu_bf16_autocasts_only_where_the_cpu_has_native_bf16(monkeypatch):
    # bf16 on a CPU without native bf16 would be emulated (slower): such a CPU keeps float32
    tr = sys.modules["spkit.prompt.train"]
    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(tr, "cpu_has_native_bf16", lambda native=native: native)
        with tr.step_autocast(cpu, TrainConfig(cpu_bf16=True)):
            assert torch.is_autocast_cpu_enabled() is native
        with tr.step_autocast(cpu, TrainConfig(cpu_bf16=False)):
            assert not torch.is_autocast_cpu_enabled()
    # where the CPU has it, a bf16 run trains (finite, falling loss), differs from float32 and keeps fp32
    # trainable parameters
    monkeypatch.setattr(tr, "cpu_has_native_bf16", lambda: True)
    data = toy_data(96)
    runs = {}
    for bf in (False, True):
        model, col, _, _ = setup(data=data)
        runs[bf] = train(model, data, col, TrainConfig(max_epochs=3, patience=0, batch_size=16, cpu_bf16=bf),
                         progress=False)
        assert all(p.dtype == torch.float32 for p in model.trainable_parameters())
    losses = [e["train_loss"] for e in runs[True].log]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert losses != [e["train_loss"] for e in runs[False].log]


def test_peak_memory_measures_growth():
    """PeakMemory sees memory allocated inside the block (a 64 MiB tensor), not just a non-negative number."""
    from spkit.prompt.train import PeakMemory

    with PeakMemory(torch.device("cpu")) as mem:
        block = torch.ones(16 * 2 ** 20)  # 64 MiB, touched
        assert float(block.sum()) == 16 * 2 ** 20
        del block
    assert mem.peak_bytes() >= 48 * 2 ** 20 and mem.process_bytes() >= mem.peak_bytes()
    assert mem.method


@pytest.mark.parametrize("method,verbalizer,reparam", [
    ("deep_prompt", "frequency", None), ("deep_prompt_tied", "frequency", None),
    ("prefix_prompt", "random", None),
    ("input_prompt", "frequency", None), ("deep_prompt", "learnable", None),
    ("deep_prompt", "learnable_freqinit", None), ("deep_prompt", "frequency", 16),
    ("deep_prompt_tied", "frequency", 16), ("prefix_prompt", "frequency", 16)])
def test_trainable_count_exact_and_every_live_parameter_gets_gradient(method, verbalizer, reparam):
    L = 5
    model, col, data, _ = setup(method, verbalizer, length=L, reparam=reparam)
    c = model.lm.cfg
    n_layers, d, V, C = c.n_layers, c.dim, c.vocab_size, 4
    if reparam is None:
        expected = {"input_prompt": L * d, "deep_prompt": (2 * n_layers + 1) * L * d,
                    "deep_prompt_tied": n_layers * L * d, "prefix_prompt": n_layers * 2 * L * d}[method]
    else:
        out = n_layers * (1 if method == "deep_prompt_tied" else 2) * d
        expected = L * d + d * reparam + reparam + reparam * out + out
        expected += L * d if method == "deep_prompt" else 0  # its input prompt stays a plain parameter
    expected += d  # separator
    expected += {"learnable": V * C, "learnable_freqinit": V * C + C}.get(verbalizer, 0)
    assert model.num_trainable() == expected
    dead = ["prompt.input"] if method == "deep_prompt" else []
    assert model.dead_parameter_names() == dead
    assert model.num_live() == expected - (L * d if dead else 0)
    model.train()
    loss, _ = model.loss(col(data["train"][:32]))
    loss.backward()
    for name, p in model.named_trainable_parameters():
        if name in dead:  # SpeechPrompt's input prompt: its slots' keys/values are replaced in every layer
            assert p.grad is None or float(p.grad.abs().sum()) == 0.0, name
        else:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, f"dead parameter {name}"
    assert all(p.grad is None for p in model.lm.parameters())


def test_deep_prompt_input_prompt_reaches_no_output_and_tied_form_is_the_equal_pair():
    """SpeechPrompt's layout: the input prompt sits in the prompt slots whose keys/values the deep prompts
    replace, so changing it changes no token's logits; deep_prompt with key input == value input computes
    exactly what the tied form computes."""
    model, col, data, _ = setup("deep_prompt", length=4)
    model.eval()
    batch = col(data["test"][:8])
    before = model(batch.tokens, batch.padding_mask).logits
    with torch.no_grad():
        model.prompt.input.add_(torch.randn_like(model.prompt.input) * 10)
    assert torch.allclose(model(batch.tokens, batch.padding_mask).logits, before, atol=1e-5)
    # Key and value prompts are separate: perturbing only the value inputs of layer 0 changes the output.
    with torch.no_grad():
        model.prompt.prefix[0, 1].add_(1.0)
    assert not torch.allclose(model(batch.tokens, batch.padding_mask).logits, before, atol=1e-3)
    tied_cfg = PromptConfig(method="deep_prompt_tied", length=4, init="random")
    tied = build_prompted(model.lm, model.spec, model.verbalizer, tied_cfg,
                          seed=0)
    with torch.no_grad():
        model.prompt.prefix.copy_(tied.prompt.prefix[:, None].expand(-1, 2, -1, -1))
        model.separator.copy_(tied.separator)
    tied.eval()
    assert torch.allclose(model(batch.tokens, batch.padding_mask).logits,
                          tied(batch.tokens, batch.padding_mask).logits, atol=1e-5)
    # Prompt dropout (SpeechPrompt's 0.1) is on in training mode only.
    assert model.prompt.dropout == 0.1 and tied.prompt.dropout == 0.1
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model.prompt.hook_kwargs()["deep_prompts"][0][0], model.prompt.prefix[0, 0])
    model.eval()
    assert torch.equal(model.prompt.hook_kwargs()["deep_prompts"][0][0], model.prompt.prefix[0, 0])


def test_gslm_size_parameter_counts_without_training():
    """GSLM's uLM (transformer_lm_big: 12 layers, d=1024) built on the meta device (no weights in memory):
    SpeechPrompt's count (2 * 12 + 1) * L * d + d, 154,624 for IC (L=6) as its README logs, 77,824 for KS
    (L=3, the slides' 0.08M); the dead input prompt is L * d of it."""
    from spkit.prompt.tasks import TaskSpec
    from spkit.prompt.verbalizer import Verbalizer
    from spkit.ulm import transformer_lm_big

    with torch.device("meta"):
        lm = UnitLM(transformer_lm_big(104))
    # SpeechPrompt's log (IC, L=6): "num. shared model params: 151,417,856 (num. trained: 154,624)"
    assert lm.num_parameters() + 154_624 == 151_417_856
    spec = TaskSpec("intent", "classification", ("a", "b", "c"), "accuracy", False)
    verb = Verbalizer("frequency", ["a", "b", "c"], [(4,), (5,), (6,)], 104)
    for L, expected in ((6, 154_624), (3, 77_824)):
        with torch.device("meta"):
            model = PromptedULM(lm, spec, verb, make_prompt(lm, PromptConfig(method="deep_prompt", length=L)))
        assert model.num_trainable() == expected == (2 * 12 + 1) * L * 1024 + 1024
        assert model.num_live() == expected - L * 1024
        with torch.device("meta"):
            tied_prompt = make_prompt(lm, PromptConfig(method="deep_prompt_tied", length=L))
            tied = PromptedULM(lm, spec, verb, tied_prompt)
        assert tied.num_trainable() == 12 * L * 1024 + 1024


@pytest.mark.parametrize("buckets", [0, 2])
def test_resume_equals_uninterrupted(tmp_path, buckets):
    cfg = TrainConfig(max_epochs=4, patience=0, metric_every=0, batch_size=16, length_buckets=buckets)
    data = toy_data(96)
    a, col, _, _ = setup(data=data)
    ra = train(a, data, col, cfg, progress=False)
    b, col_b, _, _ = setup(data=data)
    part = train(b, data, col_b, TrainConfig(**{**cfg.to_dict(), "max_epochs": 2}), out_dir=tmp_path,
                 progress=False)
    b2, col_b2, _, _ = setup(data=data)  # a fresh process would rebuild the model the same way
    rb = train(b2, data, col_b2, cfg, out_dir=tmp_path, progress=False)
    assert rb.log[:2] == part.log  # resumed: the first two epochs (timings included) are the saved ones
    sa, sb = a.prompt_state(), b2.prompt_state()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [e["train_loss"] for e in ra.log] == [e["train_loss"] for e in rb.log]
    assert [e["valid_loss"] for e in ra.log] == [e["valid_loss"] for e in rb.log]
    # A state for another uLM is refused.
    other = build_prompted(tiny_lm(5), b2.spec, b2.verbalizer, PromptConfig(length=8), col(data["train"][:8]))
    with pytest.raises(ValueError, match="made for the uLM"):
        train(other, data, col, cfg, out_dir=tmp_path, progress=False)


def test_saved_state_with_other_settings_trains_again(tmp_path):
    """A train_state.pt made with another learning rate (or other caller settings) is never resumed: the
    result is the fresh run's with the new settings, and differs from the old run's."""
    data = toy_data(96)
    cfg = TrainConfig(max_epochs=3, patience=0, batch_size=16)
    a, col, _, _ = setup(data=data)
    ra = train(a, data, col, cfg, out_dir=tmp_path, progress=False, settings={"prompt_length": 8})
    other = TrainConfig(**{**cfg.to_dict(), "lr": cfg.lr / 10})
    b, col_b, _, _ = setup(data=data)
    rb = train(b, data, col_b, other, out_dir=tmp_path, progress=False, settings={"prompt_length": 8})
    c, col_c, _, _ = setup(data=data)
    rc = train(c, data, col_c, other, progress=False)  # fresh, no saved state
    assert [e["train_loss"] for e in rb.log] == [e["train_loss"] for e in rc.log]
    assert [e["train_loss"] for e in rb.log] != [e["train_loss"] for e in ra.log]
    sb, sc = b.prompt_state(), c.prompt_state()
    assert all(torch.equal(sb[k], sc[k]) for k in sb)
    # the same config with other caller settings (the recipe passes prompt form, length...) also retrains
    d, col_d, _, _ = setup(data=data)
    rd = train(d, data, col_d, other, out_dir=tmp_path, progress=False, settings={"prompt_length": 9})
    assert rd.log != rb.log and [e["train_loss"] for e in rd.log] == [e["train_loss"] for e in rc.log]
    # a lower cap than the saved epoch trains again too (the best state of 3 epochs is not that of 2)
    e, col_e, _, _ = setup(data=data)
    re_ = train(e, data, col_e, TrainConfig(**{**other.to_dict(), "max_epochs": 2}), out_dir=tmp_path,
                progress=False, settings={"prompt_length": 9})
    # (a resumed state would report its 3 epochs; a fresh run repeats the fresh run's first two exactly)
    assert re_.epochs_run == 2 and len(re_.log) == 2
    assert [e["train_loss"] for e in re_.log] == [e["train_loss"] for e in rc.log][:2]


def test_peak_memory_is_the_runs_own_and_finetuning_needs_more():
    """The CPU peak counts the run's own tensors: it does not depend on what ran before in the process, and
    on a uLM whose weights outweigh a batch's activations (as GSLM's do) full fine-tuning (gradients + Adam
    moments of every weight) peaks above deep prompts, in either order, as bench/prompt_memory.py measures
    in separate processes."""
    from spkit.prompt.finetune import finetune_config, train_finetune

    data = toy_data(32)
    d = UnitDictionary.from_units(range(N_UNITS))
    torch.manual_seed(0)
    lm = UnitLM(ulm_tiny(len(d), dim=256, n_layers=4, n_heads=4, ffn_dim=1024))
    spec = build_spec("kws", data)
    v = build_verbalizer("frequency", spec, d, data["train"])
    col = Collator(spec, v, d, max_len=lm.cfg.max_positions)
    cfg = TrainConfig(max_epochs=1, patience=0, batch_size=8)

    def prompt_peak() -> int:
        m = build_prompted(lm, spec, v, PromptConfig(length=8, init="random"), seed=0)
        return train(m, data, col, cfg, progress=False).peak_memory_bytes

    def finetune_peak() -> int:
        _, rep = train_finetune(lm, spec, v, data, col, finetune_config(max_epochs=1, batch_size=8),
                                progress=False)
        return rep.peak_memory_bytes

    p1, f1, p2, f2 = prompt_peak(), finetune_peak(), prompt_peak(), finetune_peak()
    assert p1 == p2 and f1 == f2  # the same run measures the same, whatever ran before it
    lm_bytes = sum(p.numel() * 4 for p in lm.parameters())
    assert f1 - p1 >= lm_bytes  # at least one more copy of every weight (gradients; Adam adds two)
    assert p1 > 0


# ------------------------------------------------------------------------------------------------
# Prompt files
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,reparam,verbalizer",
                         [("deep_prompt", None, "frequency"), ("prefix_prompt", 16, "learnable")])
def test_prompt_file_small_roundtrip_and_refuses_other_ulm(tmp_path, method, reparam, verbalizer):
    model, col, data, _ = setup(method, verbalizer, reparam=reparam)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.01 * torch.randn(p.shape))
    path = save_prompt(tmp_path / "prompt.pt", model, {"kmeans": "km123"}, info={"lr": 0.05})
    assert path.stat().st_size < 64 * 1024
    batch = col(data["test"][:16])
    loaded = load_prompt(path, model.lm, {"kmeans": "km123"})
    assert torch.equal(loaded.separator, model.separator)
    assert torch.allclose(score_labels(loaded, batch), score_labels(model, batch), atol=1e-6)
    assert loaded.verbalizer.codes == model.verbalizer.codes and loaded.spec == model.spec
    if reparam is None:
        sa, sb = model.prompt_state(), loaded.prompt_state()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    else:  # the MLP is folded away: fewer stored parameters, same prefixes
        assert loaded.num_trainable() < model.num_trainable()
    other = tiny_lm(seed=1)
    with pytest.raises(PromptFileError) as e:
        load_prompt(path, other)
    msg = str(e.value)
    assert str(path) in msg and model.ulm_fingerprint() in msg and other.fingerprint() in msg
    with pytest.raises(PromptFileError, match="kmeans"):
        load_prompt(path, model.lm, {"kmeans": "another"})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PromptFileError, match=r"junk\.pt"):
        load_prompt(tmp_path / "junk.pt", model.lm)


# ------------------------------------------------------------------------------------------------
# Verbalizers
# ------------------------------------------------------------------------------------------------

def test_frequency_verbalizer_orders_by_frequency():
    d = UnitDictionary.from_units(range(N_UNITS))
    # unit 7 most frequent, then 3; label "no" most frequent, then "yes".
    train_set = [TaskExample("a", "", "train", "s", [7, 7, 7, 3, 3, 1], "no"),
                 TaskExample("b", "", "train", "s", [7, 3, 9], "no"),
                 TaskExample("c", "", "train", "s", [7], "yes")]
    spec = build_spec("kws", train_set)
    assert spec.labels == ("yes", "no")  # SUPERB's order, not frequency
    v = build_verbalizer("frequency", spec, d, train_set)
    assert v.encode_atoms(["no"]) == [d.index(7)] and v.encode_atoms(["yes"]) == [d.index(3)]


def test_random_verbalizer_seeded_and_collision_free():
    d = UnitDictionary.from_units(range(N_UNITS))
    train_set = [TaskExample(f"u{i}", "", "train", "s", [1], f"w{i:02d}") for i in range(N_UNITS)]
    spec = build_spec("lid", train_set)
    a = build_verbalizer("random", spec, d, train_set, seed=3)
    b = build_verbalizer("random", spec, d, train_set, seed=3)
    c = build_verbalizer("random", spec, d, train_set, seed=4)
    assert a.codes == b.codes != c.codes
    for v in (a, c):  # 16 labels on 16 units: a permutation, no two labels share a unit
        assert len(set(v.codes)) == N_UNITS and v.code_len == 1
    with pytest.raises(TaskError, match="share"):
        Verbalizer("random", ["x", "y"], [[5], [5]], len(d))


def test_multi_token_codes_when_labels_outnumber_units():
    d = UnitDictionary.from_units(range(3))  # 3 usable unit tokens
    assert len(usable_tokens(d)) == 3
    train_set = [TaskExample(f"u{i}", "", "train", "s", [0, 1, 2], f"x{i}") for i in range(12)]
    spec = build_spec("lid", train_set)
    for kind in ("frequency", "random"):
        v = build_verbalizer(kind, spec, d, train_set)
        assert v.code_len == 3 and len(set(v.codes)) == 12  # 3**2 = 9 < 12 labels
        seq = v.encode_atoms(["x0", "x9"])
        assert len(seq) == 6 and v.decode_tokens([*seq, 2, 5]) == ["x0", "x9"]
    v = build_verbalizer("random", spec, d, train_set, tokens_per_atom=4)
    assert v.code_len == 4
    with pytest.raises(TaskError, match="do not fit"):
        build_verbalizer("frequency", spec, d, train_set, tokens_per_atom=2)


def test_learnable_verbalizers_v2_linear_map_and_freqinit_variant():
    freq_model, col, data, _ = setup("deep_prompt", "learnable_freqinit")
    dictionary = UnitDictionary.from_units(range(N_UNITS))
    freq = build_verbalizer("frequency", freq_model.spec, dictionary, data["train"])
    batch = col(data["test"][:16])
    with torch.no_grad():
        out = freq_model(*batch.prefixes())
        at_sep = out.logits[torch.arange(16), batch.sep_pos]
        # learnable_freqinit's initial head reads exactly the frequency verbalizer's tokens (with a bias)
        expected = at_sep[:, [c[0] for c in freq.codes]]
        assert torch.allclose(freq_model.class_logits(out.logits, batch.sep_pos), expected, atol=1e-5)
    assert freq_model.verbalizer.head.bias is not None
    # learnable: v2's plain linear map (no bias, PyTorch's seeded default init, not the frequency choice)
    model, col, data, _ = setup("deep_prompt", "learnable", seed=3)
    head = model.verbalizer.head
    assert head.bias is None and head.weight.shape == (4, model.lm.cfg.vocab_size)
    again, _, _, _ = setup("deep_prompt", "learnable", seed=3)
    assert torch.equal(again.verbalizer.head.weight, head.weight)
    assert int((head.weight != 0).sum()) == head.weight.numel()
    w0 = head.weight.detach().clone()
    fresh = model.verbalizer.fresh(3)  # what each training run takes: its own head, from its seed
    train(model, data, col, TrainConfig(max_epochs=3, patience=0, metric_every=0), progress=False)
    assert not torch.equal(w0, model.verbalizer.head.weight)
    assert torch.equal(fresh.head.weight, w0) and fresh.head is not model.verbalizer.head
    assert torch.equal(model.verbalizer.fresh(3).head.weight, w0)  # after training too: nothing carried over
    assert not torch.equal(model.verbalizer.fresh(4).head.weight, w0)
    assert fresh.codes == model.verbalizer.codes and fresh.kind == "learnable"
    freq_fresh = freq_model.verbalizer.fresh(0)  # learnable_freqinit starts from the frequency choice again
    assert torch.equal(freq_fresh.head.bias, torch.zeros(4))
    assert freq_fresh.head is not freq_model.verbalizer.head
    assert freq.fresh(5) is freq  # nothing trains in a frequency verbalizer
    # Both decoders agree for a learnable head: the argmax class (nothing to generate).
    ev = evaluate(model, data["test"][:32], col)
    assert ev["value"] == ev["constrained"]["value"]
    assert all(p["prediction"] == p["constrained_prediction"] for p in ev["predictions"])


# ------------------------------------------------------------------------------------------------
# Scoring and decoding
# ------------------------------------------------------------------------------------------------

def _full_log_prob(model, batch, b: int, seq: list[int]) -> float:
    """Teacher-forced log p(seq | prefix of row b), recomputed without any cache."""
    s = int(batch.sep_pos[b])
    tokens = torch.cat([batch.tokens[b, :s + 1], torch.tensor(seq)])[None]
    with torch.no_grad():
        lp = model(tokens).logits[0].float().log_softmax(-1)
    return sum(float(lp[s + i, t]) for i, t in enumerate(seq))


def test_constrained_scores_are_label_probabilities_multi_token():
    data = toy_data(64)
    model, col, _, _ = setup(data=data, tokens_per_atom=2)
    assert model.verbalizer.code_len == 2
    batch = col(data["test"][:6])  # right-padded: rows of different lengths
    assert bool(batch.padding_mask.any())
    probs = score_labels(model, batch)
    assert probs.shape == (6, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(6), atol=1e-5)
    lp = label_log_probs(model, batch)
    seqs = model.verbalizer.label_sequences(model.spec)
    for b in (0, 3, 5):
        for c in range(4):
            full = _full_log_prob(model, batch, b, seqs[c].tolist())
            assert math.isclose(float(lp[b, c]), full, abs_tol=1e-4)


def test_packed_label_scoring_matches_recomputation_three_tokens_and_chunks():
    # classes' continuations share one row (block-diagonal causal mask): same numbers as a full recompute,
    # whatever the number of classes per pass
    data = toy_data(64)
    model, col, _, _ = setup(data=data, tokens_per_atom=3)
    assert model.verbalizer.code_len == 3
    batch = col(data["test"][:5])
    seqs = model.verbalizer.label_sequences(model.spec)
    one_pass = label_log_probs(model, batch)
    chunked = label_log_probs(model, batch, max_tokens=2)  # one class per pass
    assert torch.allclose(one_pass, chunked, atol=1e-5)
    for b in (0, 4):
        for c in range(len(seqs)):
            assert math.isclose(float(one_pass[b, c]), _full_log_prob(model, batch, b, seqs[c].tolist()),
                                abs_tol=1e-4)


def test_packed_continuations_need_a_cache_and_matching_shapes():
    data = toy_data(16)
    model, col, _, _ = setup(data=data)
    tokens, mask = col(data["test"][:2]).prefixes()
    cache = model(tokens, mask, use_cache=True).cache
    feed = torch.full((2, 3), 5)
    eye, steps = torch.eye(3, dtype=torch.bool), torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="go together"):
        model.lm(feed, cache=cache, token_mask=eye)
    with pytest.raises(ValueError, match="go together"):
        model.lm(feed, token_mask=eye, position_offsets=steps)
    with pytest.raises(ValueError, match="token_mask"):
        model.lm(feed, cache=cache, token_mask=torch.eye(2, dtype=torch.bool), position_offsets=steps)


def test_output_length_cap_uses_training_labels_only():
    data = toy_data(32)
    _, col, _, _ = setup(data=data)
    longest = max(len(col.label_tokens(e.label)) for e in data["train"])
    assert output_length_cap(data["train"], col) == longest + 10
    assert output_length_cap(data["train"], col, margin=0) == longest
    with pytest.raises(ValueError, match="no training examples"):
        output_length_cap([], col)


def test_epoch_batches_partition_the_data_and_bucket_by_length():
    lengths = [random.Random(i).randint(5, 60) for i in range(203)]
    plain = epoch_batches(lengths, 16, seed=3, epoch=1)
    order = epoch_order(203, 3, 1)
    assert plain == [order[i:i + 16] for i in range(0, 203, 16)]
    bucketed = epoch_batches(lengths, 16, seed=3, epoch=1, buckets=4)
    assert bucketed == epoch_batches(lengths, 16, seed=3, epoch=1, buckets=4)  # seed and epoch only
    assert bucketed != epoch_batches(lengths, 16, seed=3, epoch=2, buckets=4)
    assert len(bucketed) == len(plain) == 13 and sorted(i for b in bucketed for i in b) == list(range(203))

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    assert padded(bucketed) < 0.8 * padded(plain)
    for b in bucketed:  # a batch comes from one sorted chunk: its lengths are contiguous in that chunk
        span = 4 * 16
        chunk_of = {order.index(i) // span for i in b}
        assert len(chunk_of) == 1


def test_evaluate_results_follow_the_examples_order():
    data = toy_data(64)
    model, col, _, _ = setup(data=data)
    test = data["test"][:40]
    res = evaluate(model, test, col, batch_size=8)  # evaluated in length order, reported in input order
    for i in (0, 7, 39):
        alone = score_labels(model, col([test[i]]))[0]
        assert torch.allclose(torch.tensor(res["probs"][i]), alone, atol=1e-5)
        assert res["predictions"][i]["uid"] == test[i].uid
        assert res["predictions"][i]["constrained_prediction"] == model.spec.labels[int(alone.argmax())]


def test_greedy_exact_match_mode():
    data = toy_data(64)
    model, col, _, _ = setup(data=data, verbalizer="random", seed=1)
    batch = col(data["test"][:32])
    preds = greedy_labels(model, batch)
    code_of = {c[0]: a for a, c in zip(model.verbalizer.atoms, model.verbalizer.codes)}
    with torch.no_grad():
        out = model(*batch.prefixes())
        argmax = out.logits[torch.arange(32), batch.sep_pos].argmax(-1).tolist()
    assert preds == [code_of.get(t) for t in argmax]
    # an untrained frozen LM rarely emits a label token unconstrained: those count as wrong (None)
    res = evaluate(model, data["test"][:32], col, mode="greedy")
    assert res["value"] == sum(p["prediction"] == p["label"] for p in res["predictions"]) / 32
    assert "probs" not in res


def test_beam_one_is_constrained_greedy_on_the_kv_cache():
    data = toy_data(64)
    model, col, _, _ = setup(data=data)
    batch = col(data["test"][:4])
    allowed = torch.zeros(model.lm.cfg.vocab_size, dtype=torch.bool)
    allowed[model.verbalizer.allowed_tokens()] = True
    allowed[2] = True
    hyps = beam_decode(model, batch, beam=1, max_len=6)
    for b in range(4):
        s = int(batch.sep_pos[b])
        seq = batch.tokens[b, :s + 1].tolist()
        greedy = []
        for _ in range(6):  # recompute from scratch each step: no cache
            with torch.no_grad():
                logits = model(torch.tensor([seq])).logits[0, -1].masked_fill(~allowed, float("-inf"))
            t = int(logits.argmax())
            if t == 2:
                break
            greedy.append(t)
            seq.append(t)
        assert hyps[b] == greedy
    wide = beam_decode(model, batch, beam=4, max_len=6)
    assert all(set(h) <= set(model.verbalizer.allowed_tokens()) for h in wide)


def test_beam_search_finds_planted_best_sequence():
    # Markov scorer over V=6 tokens (eos=2). Greedy takes 3 (p=.6) then faces a flat tail; the planted
    # best path is 4 -> 5 -> </s> with p = .4 * .95 * .95 = .361 > .6 * (best tail .25 ...).
    V = 6
    table = torch.full((V, V), 1e-4)
    table[3, [0, 1, 2, 4, 5]] = torch.tensor([0.25, 0.25, 0.2, 0.15, 0.15])
    table[4, 5] = 0.95
    table[5, 2] = 0.95
    logt = (table / table.sum(-1, keepdim=True)).log()
    first = torch.log(torch.tensor([[1e-4, 1e-4, 1e-4, 0.6, 0.4, 1e-4]]))

    def step(tokens, state):
        return logt[tokens], state

    def reorder(state, idx):
        return state

    greedy = beam_search(first, None, step, reorder, beam=1, max_len=5, length_penalty=0.0)
    best = beam_search(first, None, step, reorder, beam=3, max_len=5, length_penalty=0.0)
    assert greedy[0][0][0] == 3
    assert best[0][0] == [4, 5]
    assert math.isclose(best[0][1], math.log(0.4) + float(logt[4, 5] + logt[5, 2]), rel_tol=1e-5)
    allowed = torch.tensor([False, False, False, True, True, False])  # 5 forbidden: the plant is unreachable
    constrained = beam_search(first, None, step, reorder, beam=3, max_len=5, allowed=allowed)
    assert 5 not in constrained[0][0]


def test_asr_task_collate_decode_and_error_rates():
    rng = random.Random(0)
    words = ["ab", "ba", "abc"]
    ex = [TaskExample(f"t{i}", "", "train", "s", [rng.randrange(N_UNITS) for _ in range(6)],
                      " ".join(rng.choice(words) for _ in range(2))) for i in range(24)]
    data = {"train": ex[:16], "valid": ex[16:20], "test": ex[20:]}
    spec = build_spec("asr", data)
    assert spec.kind == "sequence" and spec.labels == ("|", "a", "b", "c", "<unk>") and spec.lower_is_better
    d = UnitDictionary.from_units(range(N_UNITS))
    lm = tiny_lm()
    v = build_verbalizer("frequency", spec, d, data["train"])
    col = Collator(spec, v, d, max_len=12)
    batch = col(data["train"][:2])
    e = data["train"][0]
    n_lab = len(e.label) + 1  # characters + </s>
    assert int(batch.label_mask[0].sum()) == n_lab and batch.tokens.shape[1] <= 12
    assert int(batch.input_lengths[0]) == 12 - 2 - n_lab  # truncated from the right: beginning kept
    kept = [d.index(u) for u in e.units[:12 - 2 - n_lab]]
    assert batch.tokens[0, 1:1 + len(kept)].tolist() == kept
    left = Collator(spec, v, d, max_len=12, truncate="left")(data["train"][:1])
    tail = e.units[len(e.units) - len(kept):]
    assert left.tokens[0, 1:1 + len(kept)].tolist() == [d.index(u) for u in tail]
    model = build_prompted(lm, spec, v, PromptConfig(length=4), col(data["train"]), seed=0)
    train(model, data, Collator(spec, v, d), TrainConfig(max_epochs=2, metric_every=1, batch_size=8),
          progress=False)
    res = evaluate(model, data["test"], Collator(spec, v, d), beam=3, max_len=12)
    assert res["metric"] == "cer" and res["value"] == res["cer"]
    # the rates are those of the predictions it returns (recomputed here), not just numbers >= 0
    refs, hyps = [p["label"] for p in res["predictions"]], [p["prediction"] for p in res["predictions"]]
    assert refs == [e.label for e in data["test"]] and all(set(h) <= set("abc |\ufffd") for h in hyps)
    assert res["cer"] == pytest.approx(error_rate(refs, hyps))
    assert res["wer"] == pytest.approx(error_rate([r.split() for r in refs], [h.split() for h in hyps]))
    assert error_rate(["kitten"], ["sitting"]) == 0.5  # torchaudio's edit distance: 3 edits / 6 characters
    assert error_rate(["go up", "no"], ["go", "yes no"]) == pytest.approx((3 + 4) / 7)
    assert error_rate(["ab cd"], ["ab cd"]) == 0.0
    assert math.isclose(error_rate([["a", "b"]], [["a"]]), 0.5)


# ------------------------------------------------------------------------------------------------
# Loading unit files; bad inputs
# ------------------------------------------------------------------------------------------------

def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_load_task_from_unit_records_intent_and_errors(tmp_path):
    def rec(uid, split, label, units=(5, 6, 7)):
        return {"uid": uid, "path": f"/a/{uid}.wav", "split": split, "speaker": "s1", "label": label,
                "text": "turn on the lights", "units": list(units), "durations": [1] * len(units),
                "n_frames": 3}
    lab1 = {"action": "activate", "object": "lights", "location": "kitchen"}
    lab2 = {"action": "deactivate", "object": "none", "location": "none"}
    _write(tmp_path / "train.jsonl", [rec("a", "train", lab1), rec("b", "train", lab2)])
    _write(tmp_path / "valid.jsonl", [rec("c", "valid", lab2)])
    _write(tmp_path / "test.jsonl", [rec("d", "test", "activate|lights|kitchen")])
    data = load_task("intent", tmp_path)
    assert [e.label for e in data["train"]] == ["activate|lights|kitchen", "deactivate|none|none"]
    spec = build_spec("intent", data)
    assert spec.atoms("deactivate|none|none") == ["action=deactivate", "object=none", "location=none"]
    # "none" of object and of location are different atoms
    assert spec.all_atoms() == ["action=activate", "action=deactivate", "object=lights", "object=none",
                                "location=kitchen", "location=none"]
    load_task("intent", tmp_path, spec=spec)
    d = UnitDictionary.from_units(range(N_UNITS))
    v = build_verbalizer("frequency", spec, d, data["train"])
    assert v.label_sequences(spec).shape == (2, 3)  # one token per slot

    with pytest.raises(TaskError, match="unknown task"):
        load_task("speaker-id", tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_task("kws", tmp_path / "nowhere")
    data2, col = prepare_task("intent", tmp_path, d, verbalizer="random", seed=2, max_len=64)
    assert col.spec == spec and col.verbalizer.kind == "random" and len(data2["test"]) == 1
    # </s>, units, <sep>, one token per slot, </s> (a target: greedy decoding learns to stop)
    assert col(data2["test"]).tokens.shape == (1, 1 + 3 + 1 + 3 + 1)
    _write(tmp_path / "test.jsonl", [rec("d", "test", "activate|music|bedroom")])
    with pytest.raises(TaskError, match=r"test\.jsonl.*'d'"):
        load_task("intent", tmp_path, spec=spec)
    with pytest.raises(FileNotFoundError, match=r"train\.jsonl:1.*not a class name"):
        load_task("kws", tmp_path)  # intent dicts are no keyword labels
    _write(tmp_path / "valid.jsonl", [{"uid": "x", "units": "5 6", "label": "yes"}])
    with pytest.raises(FileNotFoundError, match=r"valid.jsonl:1.*integer"):
        load_task("kws", tmp_path, splits=("valid",))
    (tmp_path / "valid.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"valid\.jsonl"):
        load_task("intent", tmp_path)


def test_label_sets_come_from_the_training_split_only(tmp_path):
    """A label only in test is an error naming the label and the file; the label set ignores valid/test."""
    def rec(uid, label, text="ab ba"):
        return {"uid": uid, "path": f"/a/{uid}.wav", "speaker": "s1", "label": label, "text": text,
                "units": [5, 6, 7]}
    _write(tmp_path / "train.jsonl", [rec("a", "yes"), rec("b", "no")])
    _write(tmp_path / "valid.jsonl", [rec("c", "no")])
    _write(tmp_path / "test.jsonl", [rec("d", "yes"), rec("e", "maybe")])
    d = UnitDictionary.from_units(range(N_UNITS))
    with pytest.raises(TaskError, match=r"test\.jsonl: label 'maybe' \(uid 'e'\) is not in the training"):
        prepare_task("kws", tmp_path, d)
    # without the test split the same call works, and its labels are the training split's
    data, col = prepare_task("kws", tmp_path, d, splits=("train", "valid"))
    assert col.spec.labels == ("yes", "no")
    _write(tmp_path / "valid.jsonl", [rec("c", "up")])
    with pytest.raises(TaskError, match=r"valid\.jsonl: label 'up'"):
        prepare_task("kws", tmp_path, d, splits=("train", "valid"))
    # ASR: a character unseen in training is <unk>, never part of the character set, and always an error
    _write(tmp_path / "valid.jsonl", [rec("c", "no", "ab")])
    _write(tmp_path / "test.jsonl", [rec("d", "yes", "ax b")])
    data, col = prepare_task("asr", tmp_path, d)
    assert col.spec.labels == ("|", "a", "b", "<unk>")
    assert col.spec.atoms("ax b") == ["a", "<unk>", "|", "b"]
    assert col.spec.label_from_atoms(["a", "<unk>"]) == "a\ufffd"
    assert error_rate(["ax b"], [col.spec.label_from_atoms(col.spec.atoms("ax b"))]) == pytest.approx(0.25)
    batch = col(data["test"])  # encodes: the <unk> atom has a code
    assert int(batch.label_mask.sum()) == 5  # a <unk> | b </s>


def test_bad_verbalizer_and_prompt_settings():
    data = toy_data(16)
    d = UnitDictionary.from_units(range(N_UNITS))
    spec = build_spec("kws", data)
    with pytest.raises(TaskError, match="unknown verbalizer"):
        build_verbalizer("alphabetical", spec, d, data["train"])
    asr_spec = build_spec("asr", [TaskExample("a", "", "train", "s", [1], "ab")])
    with pytest.raises(TaskError, match="classification"):
        build_verbalizer("learnable", asr_spec, d, [])
    v = build_verbalizer("frequency", spec, d, data["train"])
    with pytest.raises(TaskError, match="does not fit"):
        v.encode_atoms(["maybe"])
    with pytest.raises(TaskError, match="'go' does not fit"):
        Collator(spec, v, d)([TaskExample("z", "", "test", "s", [1], "go")])
    with pytest.raises(ValueError, match="prompt method"):
        PromptConfig(method="lora")
    with pytest.raises(ValueError, match="activations"):
        build_prompted(tiny_lm(), spec, v, PromptConfig(), None)


def test_same_seed_same_prompt_and_activation_init_uses_real_activations():
    a, col, data, _ = setup("prefix_prompt")
    b, _, _, _ = setup("prefix_prompt")
    sa, sb = a.prompt_state(), b.prompt_state()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    batch = activation_batch(col, data["train"], 64, seed=0)
    # every PEFT prefix key is one of the LM's own keys at a real position of the init batch
    tokens, mask = batch.prefixes()
    with torch.no_grad():
        kv = a.lm(tokens, padding_mask=mask, return_layer_states=True).keys_values
    keys0 = kv[0][0].permute(0, 2, 1, 3)[~mask]  # (real positions, H, dh)
    prefix_keys = a.prompt.prefix[0, 0].permute(1, 0, 2)  # (L, H, dh)
    assert all(any(torch.allclose(k, r) for r in keys0) for k in prefix_keys)
    c = build_prompted(a.lm, a.spec, a.verbalizer, PromptConfig(method="prefix_prompt", length=8), batch,
                       seed=1)
    assert not torch.equal(c.prompt.prefix, a.prompt.prefix)


def test_reparameterised_prefix_starts_at_the_activations_and_folds_away():
    model, col, data, _ = setup("deep_prompt", reparam=16, length=8)
    batch = activation_batch(col, data["train"], 64, seed=0)
    target = model.prompt.activation_targets(model.lm, *batch.prefixes(), torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model.prompt.prefixes(), target, atol=1e-4)
        flat = model.prompt.materialize()
        assert torch.equal(flat.prefix, model.prompt.prefixes()) and flat.reparam_hidden is None


# ------------------------------------------------------------------------------------------------
# The two decoders on hand-made outputs
# ------------------------------------------------------------------------------------------------

def test_greedy_exact_and_constrained_decoders_on_hand_made_outputs(monkeypatch):
    """greedy_exact (SpeechPrompt's): the generated tokens up to </s> must equal a label's sequence; an
    output that goes on after the label, stops early, or is no label is wrong. constrained: the label
    with the highest sequence log-probability, whatever greedy generation would emit."""
    import spkit.prompt.decode as dec

    model, col, data, _ = setup("deep_prompt", tokens_per_atom=2)
    seqs = model.verbalizer.label_sequences(model.spec).tolist()  # 4 classes, 2 tokens each
    labels = model.spec.labels
    other = next(t for t in range(4, model.lm.cfg.vocab_size) if t not in {x for q in seqs for x in q})
    E, P = 2, 1  # </s>, pad
    rows = [
        [*seqs[0], E],                 # exactly label 0, then </s>: hit
        [*seqs[1], other],             # label 1 but it goes on: longer than every label, wrong
        [seqs[2][0], E, P],            # stops after one token: wrong
        [*seqs[3], E],                 # label 3 (the reference is label 2 below): a miss, predicted 3
        [other, other, other],         # no label at all
        [*seqs[2], E],                 # label 2: hit
    ]
    refs = [labels[0], labels[1], labels[2], labels[2], labels[0], labels[2]]
    captured = {}

    def fake_greedy(model_, batch, n):
        captured["n"] = n
        return torch.tensor(rows[:len(batch.uids)])

    # constrained scores: hand-made log-probabilities whose argmax is the reference for every row but the last
    scores = torch.full((6, 4), -5.0)
    for i, r in enumerate(refs[:5]):
        scores[i, labels.index(r)] = -1.0
    scores[5, 0] = -0.5
    monkeypatch.setattr(dec, "greedy_tokens", fake_greedy)
    monkeypatch.setattr(dec, "label_log_probs", lambda m, b: scores[:len(b.uids)])
    monkeypatch.setattr(dec, "length_order", lambda ex: list(range(len(ex))))
    examples = [dataclasses.replace(data["test"][i], label=r) for i, r in enumerate(refs)]
    assert dec.greedy_labels(model, col(examples)) == [labels[0], None, None, labels[3], None, labels[2]]
    assert captured["n"] == 3  # k + 1 steps decide exact equality
    ev = dec.evaluate(model, examples, col, batch_size=6)
    assert ev["decoder"] == "greedy_exact" and ev["value"] == 2 / 6
    assert ev["constrained"]["value"] == 5 / 6
    assert [p["constrained_prediction"] for p in ev["predictions"]] == [*refs[:5], labels[0]]
    only = dec.evaluate(model, examples, col, batch_size=6, mode="constrained")
    assert only["decoder"] == "constrained" and only["value"] == 5 / 6 and "constrained" not in only
    greedy_only = dec.evaluate(model, examples, col, batch_size=6, mode="greedy")
    assert greedy_only["value"] == 2 / 6 and "probs" not in greedy_only


def test_loss_positions_speechprompt_label_eos_and_label():
    model, col, data, _ = setup("deep_prompt")
    ex = data["train"][:2]
    rows = {lp: dataclasses.replace(col, loss_positions=lp)(ex)
            for lp in ("sep_label_eos", "label_eos", "label")}
    b = rows["sep_label_eos"]
    s = int(b.sep_pos[0])
    tok = model.verbalizer.label_sequences(model.spec)[model.spec.class_index(ex[0].label)].tolist()
    # SpeechPrompt: every target from <s> on: the last unit predicts <s>, then the label, then </s>
    assert b.targets[0][b.label_mask[0]].tolist() == [0, *tok, 2]
    assert b.label_mask[0].nonzero()[:, 0].tolist() == [s - 1, s, s + 1]
    assert rows["label_eos"].targets[0][rows["label_eos"].label_mask[0]].tolist() == [*tok, 2]
    assert rows["label"].targets[0][rows["label"].label_mask[0]].tolist() == tok
    with pytest.raises(ValueError, match="loss_positions"):
        dataclasses.replace(col, loss_positions="all")


def test_lr_schedule_warmup_then_decay_to_the_cap():
    from spkit.prompt.train import lr_factor

    assert [lr_factor(s, 100, warmup=4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(60, 100, warmup=4, decay="none") == 1.0
    assert lr_factor(52, 100, warmup=4, decay="linear") == pytest.approx(0.5)
    assert lr_factor(52, 100, warmup=4, decay="cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, warmup=4, decay="cosine", floor=0.1) == pytest.approx(0.1)
    assert lr_factor(28, 100, warmup=4, decay="cosine") > lr_factor(28, 100, warmup=4, decay="linear")
    with pytest.raises(ValueError, match="decay"):
        TrainConfig(decay="step")


def test_killed_run_with_a_schedule_resumes_to_the_uninterrupted_one(tmp_path, monkeypatch):
    """The learning rate is a function of the global step, so a run killed after epoch 2 and resumed
    follows the same warmup + cosine schedule (and the head's own rate) as an uninterrupted run."""
    import sys

    train_mod = sys.modules["spkit.prompt.train"]  # the package exports a function of the same name
    cfg = TrainConfig(max_epochs=4, patience=0, metric_every=0, batch_size=16, warmup_steps=5, decay="cosine",
                      min_lr_ratio=0.1)
    data = toy_data(96)
    a, col, _, _ = setup(data=data)
    ra = train(a, data, col, cfg, progress=False)
    real, calls = train_mod.validation_loss, []

    def dies_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    b, col_b, _, _ = setup(data=data)
    monkeypatch.setattr(train_mod, "validation_loss", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(b, data, col_b, cfg, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(train_mod, "validation_loss", real)
    b2, col_b2, _, _ = setup(data=data)
    rb = train(b2, data, col_b2, cfg, out_dir=tmp_path, progress=False)
    assert [e["train_loss"] for e in ra.log] == [e["train_loss"] for e in rb.log]
    sa, sb = a.prompt_state(), b2.prompt_state()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # without the schedule the run differs: the schedule is in effect
    c, col_c, _, _ = setup(data=data)
    rc = train(c, data, col_c, TrainConfig(**{**cfg.to_dict(), "warmup_steps": 0, "decay": "none"}),
               progress=False)
    assert [e["train_loss"] for e in rc.log] != [e["train_loss"] for e in ra.log]

"""Analysis functions of notebooks 04 (verbalizers) and 05 (attention) on tiny synthetic inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spkit.analysis import attention as att
from spkit.analysis import figures as vf
from spkit.analysis import metrics as vm
from spkit.analysis import tables as vt
from spkit.analysis import unit_audio as vu
from spkit.analysis import verbalizer as va
from spkit.audio import save_audio
from spkit.prompt.checkpoint import PromptFileError, load_prompt_on_ulm, save_prompt
from spkit.prompt.model import PromptConfig, build_prompted
from spkit.prompt.random_lm import random_ulm
from spkit.prompt.tasks import Collator, TaskExample, build_spec
from spkit.prompt.verbalizer import build_verbalizer
from spkit.ulm.dictionary import UnitDictionary
from spkit.ulm.model import UnitLM, ulm_tiny


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------------
# Confusion, accuracy, probabilities
# ------------------------------------------------------------------------------------------------

def test_confusion_matrix_counts_and_rows():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 1, 0, 1, 1, 0]
    cm = vm.confusion_matrix(y_true, y_pred, 4)
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[2, 0] = 2, 1, 2, 1
    assert np.array_equal(cm, expected)
    norm = vm.confusion_matrix(y_true, y_pred, 4, normalize=True)
    assert np.allclose(norm[:3].sum(1), 1.0) and np.all(norm[3] == 0)  # class 3 absent: zero row, no NaN
    assert norm[0, 1] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="outside"):
        vm.confusion_matrix([0, 5], [0, 1], 4)


def _eval(kind: str, seed: int, y_true: list[int], y_pred: list[int]) -> va.PromptEval:
    probs = np.eye(3)[y_pred]
    return va.PromptEval(kind, seed, ("a", "b", "c"), [str(i) for i in range(len(y_true))],
                         np.array(y_true), np.array(y_pred), probs)


def test_accuracy_table_mean_and_sample_std():
    evals = [_eval("frequency", 1, [0, 1, 2, 0], [0, 1, 2, 1]),
             _eval("frequency", 0, [0, 1, 2, 0], [0, 1, 2, 0]), _eval("random", 0, [0, 1], [1, 1])]
    table = vm.accuracy_table(evals)
    assert table["frequency"]["seeds"] == [0, 1] and table["frequency"]["values"] == [1.0, 0.75]
    assert table["frequency"]["mean"] == pytest.approx(0.875)
    assert table["frequency"]["std"] == pytest.approx(np.std([1.0, 0.75], ddof=1))
    assert table["random"]["std"] is None and table["random"]["mean"] == 0.5


def test_class_probabilities_split_own_and_other():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
    d = vm.class_probabilities(probs, [0, 1, 2, 0], ["a", "b", "c"])
    assert np.allclose(d["a"]["own"], [0.7, 0.6]) and np.allclose(d["a"]["other"], [0.1, 0.3])
    assert np.allclose(d["c"]["own"], [0.4]) and d["c"]["other"].size == 3


# ------------------------------------------------------------------------------------------------
# Mutual information
# ------------------------------------------------------------------------------------------------

def test_mutual_information_known_values():
    y = np.repeat(np.arange(4), 24)
    assert vm.mutual_information(y, y) == pytest.approx(2.0)  # H(Y) of 4 equiprobable classes
    x = np.tile([0, 1], 48)  # independent of y by construction: each class has 50% of each value
    assert vm.mutual_information(x, y) == pytest.approx(0.0, abs=1e-12)
    # X = Y mod 2 carries exactly 1 bit about Y.
    assert vm.mutual_information(y % 2, y) == pytest.approx(1.0)


def test_unit_mi_constructed_example():
    # 2 balanced classes, 3 units: unit 0 occurs exactly in class-0 clips (1 bit), unit 1 everywhere
    # (0 bits), unit 2 in every clip of class 1 and half of class 0.
    seqs = [[0, 1], [0, 1, 2], [0, 1], [0, 1, 2], [1, 2], [1, 2], [1, 2], [1, 2]]
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    pres = vm.unit_presence(seqs, 3)
    assert pres.shape == (8, 3) and pres[:, 1].all()
    mi = vm.unit_label_mi(pres, y, 2)
    assert mi[0] == pytest.approx(1.0) and mi[1] == pytest.approx(0.0, abs=1e-12)
    # Unit 2 by hand, H(Y) - H(Y | X): present in 6 clips (2 of class 0), absent in 2 (both class 0).
    def h(q: list[float]) -> float:
        return -sum(v * math.log2(v) for v in q if v > 0)

    expected = 1.0 - (6 / 8) * h([2 / 6, 4 / 6]) - (2 / 8) * h([1.0])
    assert mi[2] == pytest.approx(expected)
    cmi = vm.unit_class_mi(pres, y, 2)
    assert cmi[0, 0] == pytest.approx(1.0) and cmi[1, 0] == pytest.approx(-1.0)  # sign: rarer in class 1
    assert cmi[1, 2] > 0 > cmi[0, 2]
    with pytest.raises(ValueError, match="outside"):
        vm.unit_presence([[3]], 3)
    assert vm.class_indices(["no", "zzz", "yes", "no"], ["yes", "no"]) == ([0, 2, 3], [1, 0, 1])


def test_top_units_and_comparison_with_mi():
    w = np.array([[0.1, 2.0, 0.0, 1.0], [0.5, 0.5, 3.0, 0.0]])
    ids = [10, 11, 12, 13]
    top = va.top_units(w, ids, ["a", "b"], k=2)
    assert top["a"] == [(11, 2.0), (13, 1.0)]
    assert [u for u, _ in top["b"]] == [12, 10]  # tie 0.5/0.5: lower unit id first
    mi = np.zeros((2, 14))
    mi[0, [11, 13]] = [0.9, 0.5]
    mi[1, [12, 13]] = [0.7, 0.3]
    rows = vm.compare_with_mi(w, ids, mi, ["a", "b"], k=2)
    assert rows[0]["overlap"] == 2 and rows[0]["mi_top"] == [11, 13]
    assert rows[1]["head_top"] == [12, 10] and rows[1]["mi_top"] == [12, 13] and rows[1]["overlap"] == 1


# ------------------------------------------------------------------------------------------------
# Unit audio
# ------------------------------------------------------------------------------------------------

def test_unit_segments_and_audio(tmp_path):
    frames = {"b": [3, 3, 3, 1, 3], "a": [1, 3, 3, 3, 2]}
    segs = vu.unit_segments(frames, 3)
    assert segs == [("a", 1, 4), ("b", 0, 3), ("b", 4, 5)]  # longest first, then uid, start
    assert vu.unit_segments(frames, 3, min_frames=2) == segs[:2]
    n = 400 + 320 * 4  # 5 HuBERT frames
    wave = np.linspace(-0.5, 0.5, n).astype(np.float32)
    save_audio(tmp_path / "a.wav", torch.from_numpy(wave), 16000)
    save_audio(tmp_path / "long.wav", torch.zeros(16000 * 3), 16000)
    paths = {"a": str(tmp_path / "a.wav"), "b": str(tmp_path / "long.wav")}
    audio = vu.unit_audio(segs[:1], paths, {"a": 5}, gap_s=0.01, fade_s=0.001)
    cut = 3 * 320
    assert audio.dtype == np.float32 and audio.size == cut + 160
    assert np.allclose(audio[20:cut - 20], wave[320 + 20:320 + cut - 20], atol=1e-4)  # the frames, unfaded
    assert abs(audio[0]) < 1e-6 and np.all(audio[cut:] == 0)  # faded in, then silence
    # "b" is a 3 s file for 5 frames: a window of a longer file, skipped rather than cut wrongly.
    assert vu.unit_audio(segs[1:], paths, {"a": 5, "b": 5}).size == 0
    assert vu.unit_audio(segs, paths, {"a": 5}, max_seconds=0.03, gap_s=0.0).size == 480


# ------------------------------------------------------------------------------------------------
# Attention
# ------------------------------------------------------------------------------------------------

def test_token_time_spans_and_frame_weights():
    spans = att.token_time_spans([2, 1, 3])
    assert np.allclose(spans, [[0.0, 0.04], [0.04, 0.06], [0.06, 0.12]])
    assert np.array_equal(att.frame_weights(np.array([0.5, 0.2, 0.3]), [2, 1, 3]),
                          [0.5, 0.5, 0.2, 0.3, 0.3, 0.3])
    with pytest.raises(ValueError):
        att.token_time_spans([2, 0])
    with pytest.raises(ValueError):
        att.frame_weights(np.ones(2), [1, 1, 1])


def test_key_segments_partition():
    segs = att.key_segments(4, 5, 2)
    assert [(s.start, s.stop) for s in segs.values()] == [(0, 4), (4, 5), (5, 10), (10, 11), (11, 13)]
    mass = att.segment_mass(np.full((2, 13), 1 / 13), segs)
    assert np.allclose(sum(mass.values()), 1.0) and mass["speech"].shape == (2,)


def _tiny_setup(verbalizer: str = "frequency", method: str = "deep_prompt"):
    torch.manual_seed(0)
    K = 12
    dictionary = UnitDictionary.from_units(range(K))
    lm = UnitLM(ulm_tiny(len(dictionary), dim=32, n_layers=2, n_heads=4, ffn_dim=64, dropout=0.0)).eval()
    rng = np.random.default_rng(0)
    labels = ["yes", "no", "up"]
    examples = [TaskExample(f"u{i}", "", "train", "s", [int(u) for u in rng.integers(0, K, 3 + i % 5)],
                            labels[i % 3]) for i in range(12)]
    spec = build_spec("kws", examples)
    verb = build_verbalizer(verbalizer, spec, dictionary, examples, seed=0, tokens_per_atom=2)
    collator = Collator(spec, verb, dictionary, max_len=lm.cfg.max_positions)
    model = build_prompted(lm, spec, verb, PromptConfig(method=method, length=3, init="random"), seed=0)
    return model, collator, examples, dictionary, lm


@pytest.mark.parametrize("method", ["deep_prompt", "input_prompt"])
def test_capture_attention_includes_prompt_keys(method):
    model, collator, examples, _, _ = _tiny_setup(method=method)
    ex = examples[4]
    durations = [2] * len(ex.units)
    clip = att.capture_attention(model, ex, collator, durations)
    n = len(ex.units)
    assert clip.attn.shape == (2, 4, 3, 3 + 1 + n + 1 + 2)  # <sep> + 2 label queries; L=3 prompt keys
    assert clip.queries == ["<sep>", "label 1", "label 2"] and clip.units == ex.units
    assert clip.key_names[:4] == ["p0", "p1", "p2", "</s>"] and clip.key_names[4] == f"u{ex.units[0]}"
    # Every query's probabilities sum to 1 over the clip's keys, and so do the segment masses.
    assert np.allclose(clip.attn.sum(-1), 1.0, atol=1e-5)
    mass = clip.mass()
    assert np.allclose(sum(mass.values()), 1.0, atol=1e-5)
    assert (mass["prompt"] > 0).all()  # the prefixes are visible to every query
    assert np.allclose(mass["label"][..., 0], 0.0)  # causal: <sep> cannot see the label tokens
    assert np.allclose(clip.spans()[-1], [2 * (n - 1) / 50, 2 * n / 50])
    # The captured path computes the same logits as the fast (SDPA) path: it is the model's attention.
    batch = collator([ex])
    fast = model(batch.tokens, batch.padding_mask).logits
    slow = model(batch.tokens, batch.padding_mask, return_attn=True).logits
    assert torch.allclose(fast, slow, atol=1e-5)


@torch.no_grad()
def test_capture_attention_matches_manual_recomputation():
    model, collator, examples, _, lm = _tiny_setup()
    ex = examples[2]
    clip = att.capture_attention(model, ex, collator, [1] * len(ex.units))
    batch = collator([ex])
    out = lm(batch.tokens, token_embeds=model.embed(batch.tokens), return_layer_states=True,
             **model.prompt.hook_kwargs())
    # Layer 0 by hand: queries from LN(x) at <sep>, keys of [prompt prefixes, tokens].
    block = lm.blocks[0]
    h = out.attn_inputs[0][0]  # (T, d)
    d, H = lm.cfg.dim, lm.cfg.n_heads
    q = torch.nn.functional.linear(h, block.attn.qkv.weight[:d], block.attn.qkv.bias[:d]).view(-1, H, d // H)
    pk = block.attn.project(model.prompt.prefixes()[0, 0][None], "k")  # layer 0's key prompts
    k = torch.cat([pk[0], out.keys_values[0][0][0]], dim=1)  # (H, L + T, dh)
    sep = int(batch.sep_pos[0])
    scores = torch.einsum("hd,hkd->hk", q[sep], k[:, :3 + sep + 1]) / math.sqrt(d // H)
    assert np.allclose(clip.attn[0, :, 0, :3 + sep + 1], scores.softmax(-1).numpy(), atol=1e-5)


def test_mass_summary_rows_sum_to_one_and_learnable_head(tmp_path):
    model, collator, examples, dictionary, _ = _tiny_setup()
    summary = att.mass_summary(model, examples, collator, batch_size=5)  # padded batches
    assert summary["n_clips"] == 12 and summary["mass"].shape == (2, len(att.SEGMENTS))
    assert np.allclose(summary["mass"].sum(1), 1.0, atol=1e-5)
    assert np.allclose(summary["per_head"].sum(-1), 1.0, atol=1e-5)
    assert np.allclose(summary["mass"][:, att.SEGMENTS.index("label")], 0.0)
    # Same numbers one clip at a time (padding changes nothing).
    single = att.mass_summary(model, examples[:3], collator, batch_size=1)
    batched = att.mass_summary(model, examples[:3], collator, batch_size=3)
    assert np.allclose(single["per_head"], batched["per_head"], atol=1e-5)
    lab = att.mass_summary(model, examples, collator, query="label")
    assert lab["mass"][:, att.SEGMENTS.index("label")].min() > 0  # the first label token sees itself
    # A learnable verbalizer's head, through a prompt file, evaluated like notebook 04 does.
    m2, _, ex2, _, lm2 = _tiny_setup(verbalizer="learnable")
    w, units = va.head_weights(m2.verbalizer, dictionary)
    assert w.shape == (3, 12) and units == list(range(12))
    with pytest.raises(va.AnalysisError):
        va.head_weights(model.verbalizer, dictionary)
    path = save_prompt(tmp_path / "prompt.pt", m2)
    (tmp_path / "units").mkdir()
    with open(tmp_path / "units" / "test.jsonl", "w") as f:
        for e in ex2:
            f.write(json.dumps({"uid": e.uid, "path": "", "units": e.units, "label": e.label}) + "\n")
    ev, _ = va.evaluate_prompt_file(path, lm2, dictionary, tmp_path / "units", seed=3)
    assert ev.kind == "learnable" and ev.seed == 3 and ev.probs.shape == (12, 3)
    assert np.allclose(ev.probs.sum(1), 1.0, atol=1e-5) and 0.0 <= ev.accuracy <= 1.0
    assert vm.confusion_matrix(ev.y_true, ev.y_pred, 3).sum() == 12


def test_figures_build():
    model, collator, examples, _, _ = _tiny_setup()
    ex = examples[4]
    clip = att.capture_attention(model, ex, collator, [2] * len(ex.units))
    wave = torch.zeros(400 + 320 * (2 * len(ex.units) - 1))
    fig = att.clip_attention_figure(wave, clip, layer=1, head=None)
    assert len(fig.data) == 4
    assert len(att.head_view_figure(clip, 0).data) == 4
    assert att.layer_head_figure(clip).data[0].z.shape == (2, 4)
    summary = att.mass_summary(model, examples, collator)
    assert len(att.mass_figure(summary).data) == len(att.SEGMENTS)
    table = vm.accuracy_table([_eval("frequency", 0, [0, 1], [0, 1])])
    assert vf.accuracy_figure(table).data[0].y == (1.0,)
    cm = vm.confusion_matrix([0, 1, 2], [0, 2, 2], 3)
    assert vf.confusion_figure(cm, ["a", "b", "c"], "t").data[0].z.shape == (3, 3)
    two_seeds = [_eval("random", 0, [0, 1], [0, 0]), _eval("random", 1, [0], [0])]
    md = vt.accuracy_markdown(vm.accuracy_table(two_seeds))
    assert "| random | 75.0% | 35.4 | 2 | 0: 50.0%, 1: 100.0% |" in md
    table = att.mass_markdown(summary).splitlines()
    assert len(table) == 4 + 2 and table[2].startswith("| layer | prompt | bos | speech | sep | label |")
    dists = {"frequency": vm.class_probabilities(np.eye(3)[[0, 1, 2]], [0, 1, 1], ["a", "b", "c"])}
    assert len(vf.probability_violin_figure(dists).data) == 2


def test_probe_learns_which_unit_a_sequence_holds_and_ignores_padding():
    from spkit.analysis.probes import ProbeClassifier, ProbeData, _pad, train_probe

    g = torch.Generator().manual_seed(0)

    def split(n: int) -> ProbeData:
        seqs, ys = [], []
        for i in range(n):
            y = i % 2
            s = torch.randint(1, 9, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g)
            s[int(torch.randint(0, len(s), (1,), generator=g))] = 9 if y else 10  # the class's marker unit
            seqs.append(s)
            ys.append(y)
        x, lengths = _pad(seqs)
        return ProbeData(x, lengths, torch.tensor(ys))

    data = {"train": split(256), "valid": split(64), "test": split(64)}
    best = train_probe(data, 2, vocab=10, epochs=8)
    assert best["test"] > 0.9 and best["valid"] > 0.9, best
    model = ProbeClassifier(2, vocab=10)
    x = torch.tensor([[3, 4, 0, 0]])
    longer = torch.tensor([[3, 4, 7, 7]])
    torch.testing.assert_close(model(x, torch.tensor([2])), model(longer[:, :2], torch.tensor([2])))
    with pytest.raises(ValueError, match="exactly one of vocab"):
        ProbeClassifier(2)


def test_speech_spread_even_and_peaked():
    assert np.allclose(att.speech_spread(np.full((2, 5), 0.1)), 1.0)  # even, whatever the total
    assert np.allclose(att.speech_spread(np.array([0.0, 0.3, 0.0])), 0.0)  # one unit
    assert np.allclose(att.speech_spread(np.zeros(4)), 1.0)  # no attention at all: counted as even
    half = att.speech_spread(np.array([0.5, 0.5, 0.0, 0.0]))
    assert np.isclose(half, math.log(2) / math.log(4))
    with pytest.raises(ValueError):
        att.speech_spread(np.ones(1))


def test_control_prompt_loads_on_its_random_ulm_and_compares(tmp_path):
    model, collator, examples, _, lm = _tiny_setup()
    spec, verb = model.spec, model.verbalizer
    control = build_prompted(random_ulm(lm, seed=7), spec, verb, PromptConfig(length=3, init="random"),
                             seed=0)
    path = save_prompt(tmp_path / "control.pt", control, info={"random_lm": True, "random_lm_seed": 7})
    loaded = load_prompt_on_ulm(path, lm)  # the pretrained uLM given; the file's random uLM rebuilt
    assert loaded.ulm_fingerprint() == control.ulm_fingerprint() != lm.fingerprint()
    batch = collator(examples[:4])
    assert torch.allclose(loaded(batch.tokens, batch.padding_mask).logits,
                          control(batch.tokens, batch.padding_mask).logits, atol=1e-6)
    # A pretrained-uLM prompt loads on the given uLM; forcing the control path onto it is refused.
    own = save_prompt(tmp_path / "own.pt", model)
    assert load_prompt_on_ulm(own, lm).ulm_fingerprint() == lm.fingerprint()
    with pytest.raises(PromptFileError, match="fingerprint"):
        load_prompt_on_ulm(own, lm, control=True)
    # The wrong seed is another model: refused by the fingerprint check.
    wrong = save_prompt(tmp_path / "wrong.pt", control, info={"random_lm": True, "random_lm_seed": 8})
    with pytest.raises(PromptFileError, match="fingerprint"):
        load_prompt_on_ulm(wrong, lm)
    # Side by side: one row per layer, three columns per model, the speech spread within [0, 1].
    summaries = {"pretrained": att.mass_summary(model, examples, collator),
                 "random": att.mass_summary(loaded, examples, collator)}
    for s in summaries.values():
        spread = s["speech_spread"]
        assert spread.shape == (2,) and ((0 <= spread) & (spread <= 1)).all()
    table = att.compare_mass_markdown(summaries).splitlines()
    assert len(table) == 4 + 2 and table[2].count("|") == 2 + 3 * 2
    row = table[4].split("|")[1:-1]
    assert float(row[1]) == pytest.approx(summaries["pretrained"]["mass"][0, att.SEGMENTS.index("prompt")],
                                          abs=5e-4)
    assert float(row[5]) == pytest.approx(summaries["random"]["mass"][0, att.SEGMENTS.index("speech")],
                                          abs=5e-4)
    assert len(att.compare_mass_figure(summaries).data) == 4
    with pytest.raises(ValueError):
        att.compare_mass_markdown({})

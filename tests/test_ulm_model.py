"""UnitLM on its own: positions, padding, KV cache, prompt hooks, attention capture, generation,
fingerprint, and the dict.txt reader/writer."""

from __future__ import annotations

import math

import pytest
import torch

from spkit.ulm.dictionary import UnitDictionary, VocabMismatchError
from spkit.ulm.model import ULMConfig, UnitLM, lm_loss, sinusoid_table, transformer_lm_big, ulm_tiny

TOL = 1e-5


@pytest.fixture(scope="module")
def model() -> UnitLM:
    torch.manual_seed(0)
    m = UnitLM(ulm_tiny(56, dim=32, n_layers=2, n_heads=4, ffn_dim=64))
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def tokens(B: int = 3, T: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(4, 56, (B, T), generator=g)
    x[:, 0] = 2
    return x


def test_sizes_and_gslm_parameter_count():
    with torch.device("meta"):  # count without allocating 600 MB
        assert UnitLM(transformer_lm_big(104)).num_parameters() == 151_263_232
    with pytest.raises(ValueError, match="divisible"):
        ULMConfig(vocab_size=56, dim=30, n_heads=4)


def test_sinusoid_table_layout():
    t = sinusoid_table(10, 8)
    assert torch.all(t[1] == 0)
    freq = math.exp(-1 * math.log(10000) / 3)  # i=1 of d/2=4
    assert t[5, 1].item() == pytest.approx(math.sin(5 * freq), abs=1e-6)
    assert t[5, 4 + 1].item() == pytest.approx(math.cos(5 * freq), abs=1e-6)


def test_initial_perplexity_near_vocab():
    torch.manual_seed(0)
    m = UnitLM(ulm_tiny(104)).eval()
    x = torch.randint(4, 104, (4, 64))
    loss, n = lm_loss(m(x[:, :-1]).logits, x[:, 1:])
    assert 30 < math.exp(loss.item() / n.item()) < 10 * 104  # order V, not 1e67


def test_padding_and_positions(model):
    x = tokens()
    xp = x.clone()
    xp[1, 7:] = 1
    with torch.no_grad():
        full = model(xp).logits
        alone = model(x[1:2, :7]).logits
        explicit = model(x, padding_mask=xp == 1).logits
    assert (full[1, :7] - alone[0]).abs().max() < TOL
    assert (explicit[1, :7] - alone[0]).abs().max() < TOL
    assert torch.equal(model.positions(xp != 1)[1], torch.tensor([2, 3, 4, 5, 6, 7, 8, 1, 1, 1, 1, 1]))
    assert torch.isfinite(full).all()


def test_kv_cache_matches_full_with_padding(model):
    x = tokens(T=14)
    x[0, 10:] = 1
    with torch.no_grad():
        ref = model(x).logits
        out = model(x[:, :4], use_cache=True)
        parts = [out.logits]
        for t in range(4, 14, 3):
            out = model(x[:, t : t + 3], cache=out.cache, use_cache=True)
            parts.append(out.logits)
    got = torch.cat(parts, 1)
    real = x != 1
    assert (ref[real] - got[real]).abs().max() < TOL
    assert out.cache.length == 14 and out.cache.next_position.tolist() == [12, 16, 16]


def test_token_embeds_hook(model):
    x = tokens()
    with torch.no_grad():
        ref = model(x).logits
        same = model(x, token_embeds=model.embed_tokens(x)).logits
        emb = model.embed_tokens(x)
        emb[:, 5] = torch.randn(32)  # a "trainable separator" at position 5
        changed = model(token_embeds=emb).logits
    assert (ref - same).abs().max() < TOL
    assert (ref[:, :5] - changed[:, :5]).abs().max() < TOL  # causal: earlier positions unchanged
    assert (ref[:, 5:] - changed[:, 5:]).abs().max() > 1e-3


def test_input_prompts(model):
    x = tokens()
    x[2, 6:] = 1
    with torch.no_grad():
        ref = model(x).logits
        empty = model(x, input_prompts=torch.zeros(3, 0, 32)).logits
        prompts = torch.randn(3, 4, 32, requires_grad=False)
        out = model(x, input_prompts=prompts, return_attn=True)
    assert (ref - empty).abs().max() < TOL
    assert out.logits.shape == ref.shape and (out.logits - ref).abs().max() > 1e-3
    probs = out.attentions[0]  # (B, H, P+T, P+T)
    assert probs.shape == (3, 4, 16, 16)
    assert probs[2, :, 4:10, :4].sum() > 0  # prompts visible to real tokens
    assert probs[2, :, 4:10, 10:].abs().max() == 0  # pads never attended by real tokens
    # a prompt vector equal to the token's scaled embedding + position is NOT equivalent (no position):
    # checks that prompts get no positions while token positions still start at 2
    with torch.no_grad():
        tail = model(x[:, 1:], input_prompts=torch.zeros(3, 1, 32)).logits
        pos = model.positions(x[:, 1:] != 1)
    assert pos[0, 0].item() == 2 and tail.shape == (3, 11, 56)


def test_deep_prompt_forms_agree_and_prefix_is_visible(model):
    x = tokens()
    x[1, 5:] = 1
    L = 3
    g = torch.Generator().manual_seed(1)
    deep = [torch.randn(L, 32, generator=g) for _ in range(2)]  # SpeechPrompt form, broadcast over batch
    kv = [blk.attn.project_kv(d[None].expand(3, -1, -1)) for blk, d in zip(model.blocks, deep)]
    with torch.no_grad():
        a = model(x, deep_prompts=deep, return_attn=True)
        b = model(x, prefix_kv=kv).logits
        ref = model(x).logits
        no_prefix = model(x, prefix_kv=[(k[:, :, :0], v[:, :, :0]) for k, v in kv]).logits
    assert (a.logits - b).abs().max() < TOL
    assert (no_prefix - ref).abs().max() < TOL
    assert (a.logits - ref).abs().max() > 1e-3
    probs = a.attentions[1]  # (B, H, T, L+T)
    assert probs.shape == (3, 4, 12, 15)
    assert (probs[:, :, :, :L].sum(-1) > 0).all()  # every query sees the prefix
    assert probs[1, :, :5, L + 5 :].abs().max() == 0
    assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)


def test_prompts_with_cache_and_generate(model):
    x = tokens()
    x[0, 8:] = 1
    g = torch.Generator().manual_seed(2)
    kw = {
        "deep_prompts": torch.randn(2, 3, 2, 32, generator=g),
        "input_prompts": torch.randn(3, 2, 32, generator=g),
    }
    with torch.no_grad():
        ref = model(x, **kw).logits
        first = model(x[:, :6], use_cache=True, **kw)
        rest = model(x[:, 6:], cache=first.cache, use_cache=True).logits
    real = x != 1
    assert (torch.cat([first.logits, rest], 1)[real] - ref[real]).abs().max() < TOL
    with pytest.raises(ValueError, match="first call only"):
        model(x[:, 6:], cache=first.cache, **kw)
    greedy_cached = model.generate(x, 10, greedy=True, stop_at_eos=False, **kw)
    greedy_full = model.generate(x, 10, greedy=True, stop_at_eos=False, use_cache=False, **kw)
    assert torch.equal(greedy_cached, greedy_full)
    s1 = model.generate(x, 10, top_k=5, temperature=0.8, generator=torch.Generator().manual_seed(3))
    s2 = model.generate(
        x, 10, top_k=5, temperature=0.8, generator=torch.Generator().manual_seed(3), use_cache=False
    )
    assert torch.equal(s1, s2) and s1.shape == (3, 10)
    emb = model.embed_tokens(x)
    via_embeds = model.generate(
        x, 10, greedy=True, stop_at_eos=False, use_cache=False, token_embeds=emb, **kw
    )
    assert torch.equal(via_embeds, greedy_full)
    # the greedy continuation of row 0 is the argmax after its own last real token (position 7)
    with torch.no_grad():
        first_tok = model(x, **kw).logits[0, 7].argmax()
    assert greedy_cached[0, 0] == first_tok


def test_generate_stops_at_eos():
    torch.manual_seed(0)
    m = UnitLM(ulm_tiny(16, dim=16, n_layers=1, n_heads=2, ffn_dim=32)).eval()
    with torch.no_grad():
        m.embed_tokens.weight[2] *= 0
        m.final_norm.bias[:] = 5 * torch.nn.functional.normalize(torch.randn(16), dim=0)
        m.embed_tokens.weight[2] = m.final_norm.bias * 10  # </s> wins every step
    out = m.generate(torch.tensor([[2, 5, 6]]), 5)
    assert out[0, 0] == 2 and (out[0, 1:] == 1).all()


def test_layer_states_and_hidden(model):
    x = tokens()
    with torch.no_grad():
        out = model(x, return_layer_states=True, return_hidden=True, input_prompts=torch.randn(3, 2, 32))
    assert len(out.attn_inputs) == 2 and out.attn_inputs[0].shape == (3, 12, 32)
    k, v = out.keys_values[1]
    assert k.shape == (3, 4, 12, 8) and v.shape == (3, 4, 12, 8)
    k2, v2 = model.blocks[1].attn.project_kv(out.attn_inputs[1])
    assert (k - k2).abs().max() < TOL and (v - v2).abs().max() < TOL
    assert len(out.hidden_states) == 3 and torch.equal(out.hidden_states[-1], out.hidden)


def test_attention_capture_matches_fast_path(model):
    x = tokens()
    x[1, 4:] = 1
    with torch.no_grad():
        fast = model(x).logits
        slow = model(x, return_attn=True).logits
    assert (fast - slow).abs().max() < TOL


def test_freeze_fingerprint(model):
    torch.manual_seed(0)
    a = UnitLM(ulm_tiny(56))
    torch.manual_seed(0)
    b = UnitLM(ulm_tiny(56))
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 64
    with torch.no_grad():
        b.blocks[0].fc1.bias[0] += 1e-3
    assert a.fingerprint() != b.fingerprint()
    a.freeze()
    assert a.num_parameters(trainable_only=True) == 0 and not a.training
    assert a.num_parameters() == sum(p.numel() for p in a.parameters())


def test_gradients_flow_to_prompts_only(model):
    m = UnitLM(model.cfg)
    m.load_state_dict(model.state_dict(), strict=True)
    m.freeze()
    x = tokens()
    deep = torch.zeros(2, 1, 3, 32, requires_grad=True)
    sep = torch.zeros(32, requires_grad=True)
    emb = m.embed_tokens(x).clone()
    emb[:, 3] = sep
    loss, _n = lm_loss(m(x, token_embeds=emb, deep_prompts=deep).logits[:, :-1], x[:, 1:])
    loss.backward()
    assert deep.grad.abs().sum() > 0 and sep.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.parameters())


# -- dictionary ----------------------------------------------------------------------------------------
def test_dictionary_round_trip_and_padding(tmp_path):
    d = UnitDictionary.from_sequences([["5", "5", "7"], [7, 7, 7, 9]])
    assert d.symbols[4:7] == ["7", "5", "9"] and len(d) == 8 and d.num_units == 3
    assert d.symbols[7] == "madeupword0000"
    assert d.encode([9, "5"]) == [6, 5] and d.decode([2, 6, 5, 7]) == ["9", "5"]
    d.save(tmp_path / "dict.txt")
    assert (tmp_path / "dict.txt").read_text().splitlines()[0] == "7 4"
    assert UnitDictionary.load(tmp_path / "dict.txt") == d
    k100 = UnitDictionary.from_units(range(100))
    assert len(k100) == 104 and k100.index(0) == 4
    k50 = UnitDictionary.from_units(range(50))
    assert len(k50) == 56
    with pytest.raises(KeyError, match="unit 3 is not"):
        d.encode([3])
    assert d.encode([3], unk=True) == [3]


def test_dictionary_errors(tmp_path):
    bad = tmp_path / "dict.txt"
    bad.write_text("1 10\n2 x\n")
    with pytest.raises(ValueError, match=r"dict.txt:2"):
        UnitDictionary.load(bad)
    bad.write_text("1 10\n1 3\n")
    with pytest.raises(ValueError, match="duplicate"):
        UnitDictionary.load(bad)
    with pytest.raises(
        VocabMismatchError, match=r"ckpt\.pt has an embedding of 99 tokens but d\.txt defines 104"
    ):
        UnitDictionary.from_units(range(100)).check_vocab(99, "d.txt", "ckpt.pt")


def test_activation_checkpointing_gives_the_same_gradients():
    from spkit.ulm.model import UnitLM, ulm_tiny

    torch.manual_seed(0)
    lm = UnitLM(ulm_tiny(24, dim=32, n_heads=2, ffn_dim=64, dropout=0.0)).eval()
    tokens = torch.randint(4, 24, (3, 9))
    tokens[1, 6:] = 1  # right padding
    grads = []
    for ckpt in (False, True):
        lm.checkpoint_activations = ckpt
        deep = [torch.randn(4, 32, requires_grad=True) for _ in range(lm.cfg.n_layers)]
        with torch.random.fork_rng():
            torch.manual_seed(1)
            for d in deep:
                d.data.normal_()
            out = lm(tokens, deep_prompts=deep).logits
        out.logsumexp(-1).sum().backward()
        grads.append((out.detach(), [d.grad for d in deep]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)

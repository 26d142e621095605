"""uLM throughput: spkit's UnitLM against fairseq's TransformerLanguageModel, same weights, same batches.

Measures forward+backward training throughput (tokens/s, cross-entropy summed over the batch) for both,
interleaved in one run, and spkit's generation with the KV cache against recomputing the whole prefix.
Prints a table and writes ``bench/results/ulm_throughput.json``.

    .venv/bin/python bench/ulm_throughput.py                      # d=256 x 4 layers, batch 8 x 256, 1 thread
    .venv/bin/python bench/ulm_throughput.py --dim 1024 --layers 12 --heads 16 --ffn 4096   # GSLM size
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spkit.fairseq_compat import import_fairseq
from spkit.io import write_json
from spkit.ulm.fairseq_io import config_from_fairseq, state_dict_from_fairseq
from spkit.ulm.model import UnitLM, lm_loss


def build_pair(a: argparse.Namespace) -> tuple[torch.nn.Module, UnitLM, int]:
    """A fairseq transformer_lm (via the arch function: pre-LN) and the spkit model with its weights."""
    import_fairseq()
    from fairseq.data import Dictionary
    from fairseq.models.transformer_lm import TransformerLanguageModel, base_lm_architecture

    d = Dictionary()
    for u in range(a.units):
        d.add_symbol(str(u))
    d.pad_to_multiple_(8)
    args = argparse.Namespace(
        decoder_layers=a.layers,
        decoder_embed_dim=a.dim,
        decoder_ffn_embed_dim=a.ffn,
        decoder_attention_heads=a.heads,
        share_decoder_input_output_embed=True,
        tokens_per_sample=max(a.seq_len, 1024),
        max_target_positions=None,
        dropout=a.dropout,
    )
    base_lm_architecture(args)
    torch.manual_seed(0)
    task = types.SimpleNamespace(source_dictionary=d, target_dictionary=d)
    fs = TransformerLanguageModel.build_model(args, task)
    cfg = config_from_fairseq(args, len(d), "bench")
    ulm = UnitLM(cfg)
    ulm.load_state_dict(state_dict_from_fairseq(fs.state_dict(), cfg, "bench"), strict=True)
    return fs, ulm, len(d)


def time_train_step(step, n_iter: int) -> float:
    """Median seconds per call of ``step`` after one warm-up call."""
    step()
    times = []
    for _ in range(n_iter):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--units", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--iters", type=int, default=7, help="timed iterations per model (median reported)")
    p.add_argument("--gen-batch", type=int, default=4)
    p.add_argument("--gen-prompt", type=int, default=32)
    p.add_argument("--gen-new", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the CPU bf16-autocast rows")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "ulm_throughput.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    fs, ulm, vocab = build_pair(a)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, vocab, (a.batch, a.seq_len + 1), generator=g)
    x[:, 0] = 2
    inputs, targets = x[:, :-1], x[:, 1:]
    fs.train()
    ulm.train()

    with torch.no_grad():  # same weights -> same logits (eval mode, no dropout)
        fs.eval()
        ulm.eval()
        max_diff = (fs(inputs[:2, :64])[0] - ulm(inputs[:2, :64]).logits).abs().max().item()
        fs.train()
        ulm.train()

    def make_step(model: torch.nn.Module, is_fairseq: bool, bf16: bool):
        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(inputs)[0] if is_fairseq else model(inputs).logits
            loss, _ = lm_loss(logits, targets)
            loss.backward()
            model.zero_grad(set_to_none=True)

        return step

    n_tok = a.batch * a.seq_len
    train = {}
    for bf16 in (False, True) if a.bf16 else (False,):
        # Interleave so background load on a shared machine hits both alike; best of two medians.
        fs_t, ulm_t = [], []
        for _ in range(2):
            fs_t.append(time_train_step(make_step(fs, True, bf16), a.iters))
            ulm_t.append(time_train_step(make_step(ulm, False, bf16), a.iters))
        fs_tps, ulm_tps = n_tok / min(fs_t), n_tok / min(ulm_t)
        train["bf16_autocast" if bf16 else "fp32"] = {
            "fairseq": fs_tps,
            "spkit": ulm_tps,
            "speedup": ulm_tps / fs_tps,
        }

    ulm.eval()
    prompt = x[: a.gen_batch, : a.gen_prompt]
    gen = {}
    for use_cache in (True, False):
        t0 = time.perf_counter()
        out = ulm.generate(prompt, a.gen_new, greedy=True, stop_at_eos=False, use_cache=use_cache)
        gen[use_cache] = (time.perf_counter() - t0, out)
    same = torch.equal(gen[True][1], gen[False][1])
    n_gen = a.gen_batch * a.gen_new
    result = {
        "setup": {
            "dim": a.dim,
            "layers": a.layers,
            "heads": a.heads,
            "ffn": a.ffn,
            "vocab": vocab,
            "batch": a.batch,
            "seq_len": a.seq_len,
            "dropout": a.dropout,
            "threads": a.threads,
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "params": ulm.num_parameters(),
        },
        "max_logit_diff_vs_fairseq": max_diff,
        "train_tokens_per_s": train,
        "generation": {
            "batch": a.gen_batch,
            "prompt": a.gen_prompt,
            "new_tokens": a.gen_new,
            "kv_cache_tokens_per_s": n_gen / gen[True][0],
            "no_cache_tokens_per_s": n_gen / gen[False][0],
            "speedup": gen[False][0] / gen[True][0],
            "same_tokens": same,
        },
    }
    print(
        f"uLM d={a.dim} x {a.layers} layers, batch {a.batch} x {a.seq_len}, {a.threads} thread(s), "
        f"{ulm.num_parameters() / 1e6:.2f}M params; max |logit diff| vs fairseq {max_diff:.1e}"
    )
    print(f"{'':32s}{'fairseq':>12s}{'spkit':>12s}{'speedup':>10s}")
    for name, r in train.items():
        label = f"train fwd+bwd tok/s {name}"
        print(f"{label:32s}{r['fairseq']:12.0f}{r['spkit']:12.0f}{r['speedup']:9.2f}x")
    g_ = result["generation"]
    print(f"{'generate tokens/s':32s}{'no cache':>12s}{'KV cache':>12s}")
    print(
        f"{'':32s}{g_['no_cache_tokens_per_s']:12.0f}{g_['kv_cache_tokens_per_s']:12.0f}"
        f"{g_['speedup']:9.2f}x  (same tokens: {same})"
    )
    write_json(a.out, result)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

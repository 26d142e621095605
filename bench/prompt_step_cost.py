"""What a prompt step costs on the CPU, beside a fine-tuning step, and how close it runs to the core's peak.

Claims checked (one run, one thread, as a main-job worker trains):

* what a deep-prompt step of spkit-base's uLM size (``ulm_small``, d=256 x 6, K=200) costs against a full
  fine-tuning step of the same uLM on the same batch (the reference). The frozen weights need no weight
  gradients and no Adam update, but the gradient must still flow back through every layer to reach the
  first layer's prompts, and the prompt keys/values lengthen every attention: measured, the prompt step is
  *not* cheaper (1.13-1.23x the fine-tuning step, 43 vs 47 GFLOP; bench/results/prompt_step_cost.json);
* the step's FLOPs (counted by ``torch.utils.flop_counter``) over its time, against the core's measured
  matmul peak (a 1024^3 matmul in the step's precision), says how much a faster kernel could still buy:
  the step is not far from the peak, so fewer steps (the recipe), not cheaper ones, decide a prompt run's
  time;
* length bucketing (``TrainConfig.length_buckets``): the padding of KWS-shaped batches drawn at random vs
  bucketed, measured on real lengths when ``--units-file`` gives a unit file, else on a log-normal draw.

Each step is the trainer's (:func:`spkit.prompt.train.train`'s inner loop): ``model.loss`` under
:func:`spkit.prompt.train.step_autocast` -> backward -> clip -> Adam step. The timed variants alternate step
by step so that machine load hits them alike; the median of each is reported.

Usage::

    python bench/prompt_step_cost.py                  # ulm_small, 32 x 50 tokens, 12 steps each
    python bench/prompt_step_cost.py --config tiny --steps 2   # quick check of the script itself

Prints a table and writes ``bench/results/prompt_step_cost.json`` (atomically).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from spkit.io import write_json
from spkit.prompt.finetune import build_finetune
from spkit.prompt.model import PromptConfig, build_prompted
from spkit.prompt.train import TrainConfig, cpu_has_native_bf16, epoch_batches, step_autocast
from spkit.units.encoded import dedup

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prompt_step_bf16 import kws_shaped_task

ROOT = Path(__file__).resolve().parent.parent


def matmul_peak(bf16: bool, n: int = 1024, reps: int = 5) -> float:
    """FLOP/s of an n^3 matmul on this thread (fp32 or bf16): the core's practical peak."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def padding_share(lengths: list[int], batch: int, buckets: int) -> float:
    """Pad tokens over all tokens of one epoch's batches (``epoch_batches`` with ``buckets``)."""
    pad = total = 0
    for idx in epoch_batches(lengths, batch, seed=0, epoch=0, buckets=buckets):
        longest = max(lengths[i] for i in idx)
        pad += sum(longest - lengths[i] for i in idx)
        total += longest * len(idx)
    return pad / total


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    lm, spec, verb, batch = kws_shaped_task(args.config, args.units, args.tokens, args.batch)
    bf16 = cpu_has_native_bf16()
    prompted = build_prompted(lm, spec, verb, PromptConfig(method="deep_prompt", length=args.prompt_length,
                                                           init="random"), seed=0)
    finetuned = build_finetune(lm, spec, verb)
    variants = {"deep_prompt": prompted, "finetune": finetuned}
    opts = {k: torch.optim.Adam(m.trainable_parameters(), lr=1e-4) for k, m in variants.items()}
    device = torch.device("cpu")
    cfg = TrainConfig(cpu_bf16=bf16)

    def step(name: str) -> float:
        model, opt = variants[name], opts[name]
        model.train()
        t0 = time.perf_counter()
        with step_autocast(device, cfg):
            loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 1.0)
        opt.step()
        return time.perf_counter() - t0

    flops = {}
    for name in variants:
        with FlopCounterMode(display=False) as counter:
            step(name)
        flops[name] = counter.get_total_flops()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(args.steps + 1):
        for name in variants:
            t = step(name)
            if i:  # the first round warms up (allocations, oneDNN kernels)
                times[name].append(t)
    peak = matmul_peak(bf16)
    med = {k: statistics.median(v) for k, v in times.items()}
    if args.units_file:
        # the trainer's sequences are deduplicated units (+ </s>, <sep>, label)
        lengths = [len(dedup([int(u) for u in line.split("|", 1)[1].split()])[0]) + 3 for line in
                   Path(args.units_file).read_text().splitlines() if "|" in line]
        source = str(args.units_file)
    else:
        lengths = [max(5, int(x)) for x in torch.distributions.LogNormal(3.3, 0.35).sample((2000,)).tolist()]
        source = "log-normal draw (median 27 units)"
    return {
        "config": args.config, "ulm_params": lm.num_parameters(), "batch": list(batch.tokens.shape),
        "threads": args.threads, "bf16": bf16, "cpu": platform.processor() or platform.machine(),
        "step_s": {k: round(v, 4) for k, v in med.items()},
        "ratio_prompt_to_finetune": round(med["deep_prompt"] / med["finetune"], 3),
        "step_gflop": {k: round(v / 1e9, 2) for k, v in flops.items()},
        "peak_gflops": round(peak / 1e9, 1),
        "share_of_peak": {k: round(flops[k] / med[k] / peak, 3) for k in variants},
        "padding_share": {"random": round(padding_share(lengths, args.batch, 0), 3),
                          "buckets10": round(padding_share(lengths, args.batch, 10), 3), "lengths": source},
        "steps": args.steps, "reference": "full fine-tuning step",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="small", help="uLM size (spkit.ulm.model.CONFIGS; spkit-base: small)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=50, help="tokens per sequence (a KWS clip's units + label)")
    p.add_argument("--prompt-length", type=int, default=20)
    p.add_argument("--units", type=int, default=200, help="unit vocabulary K")
    p.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (a main-job worker: 1)")
    p.add_argument("--units-file", type=Path, default=None, help="a GSLM unit file (RUN/units/kws/train.txt)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prompt_step_cost.json")
    args = p.parse_args(argv)
    r = measure(args)
    prec = "bf16 autocast" if r["bf16"] else "float32"
    print(f"{r['config']} uLM ({r['ulm_params']:,} parameters), batch {r['batch']}, {prec}, 1 core; "
          f"matmul peak {r['peak_gflops']} GFLOP/s")
    print("| step | s | GFLOP | share of peak | ratio |\n|---|---:|---:|---:|---:|")
    for k in ("finetune", "deep_prompt"):
        ratio = r["step_s"][k] / r["step_s"]["finetune"]
        ref = " (reference)" if k == "finetune" else ""
        print(f"| {k}{ref} | {r['step_s'][k]} | {r['step_gflop'][k]} | {r['share_of_peak'][k]:.2f} | "
              f"{ratio:.2f} |")
    ps = r["padding_share"]
    print(f"padding share of KWS-shaped batches: random {ps['random']:.2f}, length buckets of 10 "
          f"{ps['buckets10']:.2f} ({ps['lengths']})")
    write_json(args.out, r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

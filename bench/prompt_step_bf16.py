"""Speed of one deep-prompt training step on the CPU: bf16 autocast (``cpu_bf16``) vs float32.

Claim checked: on a CPU that computes bf16 natively (AVX512-bf16 or AMX), a deep-prompt step of spkit-base's
uLM size (``ulm_small``, d=256 x 6, K=200) under bf16 autocast takes at most 0.8x the float32 step (the
reference), on one thread, as the main job's workers run. On a CPU without native bf16 the trainer keeps
float32 (:func:`spkit.prompt.train.cpu_has_native_bf16`) and this benchmark says so.

Each step is the trainer's: ``model.loss`` under :func:`spkit.prompt.train.step_autocast` -> backward ->
clip -> Adam step, on one KWS-shaped batch (``--batch`` sequences of ``--tokens`` tokens: ``[</s>, units,
<sep>, label]``). The two precisions alternate step by step so that machine load hits both alike; the median
step time of each is reported.

Usage::

    python bench/prompt_step_bf16.py                 # ulm_small, 32 x 50 tokens, 20 steps each
    python bench/prompt_step_bf16.py --config tiny   # quick check of the script itself

Prints a table and writes ``bench/results/prompt_step_bf16.json`` (atomically).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from spkit.io import write_json
from spkit.prompt.model import PromptConfig, build_prompted
from spkit.prompt.tasks import Collator, TaskExample, build_spec
from spkit.prompt.train import TrainConfig, cpu_has_native_bf16, step_autocast
from spkit.prompt.verbalizer import build_verbalizer
from spkit.ulm.dictionary import UnitDictionary
from spkit.ulm.model import CONFIGS, UnitLM

ROOT = Path(__file__).resolve().parent.parent


def kws_shaped_task(config: str, units: int, tokens: int, batch_size: int) -> tuple[Any, ...]:
    """A random uLM of size ``config`` over ``units`` units and one KWS-shaped batch (``batch_size`` sequences
    of ``tokens`` tokens: ``[</s>, units, <sep>, label]``, 12 classes): ``(lm, spec, verbalizer, batch)``."""
    torch.manual_seed(0)
    dictionary = UnitDictionary.from_units(range(units))
    lm = UnitLM(CONFIGS[config](len(dictionary)))
    g = torch.Generator().manual_seed(0)
    labels = [f"w{i}" for i in range(12)]
    examples = [TaskExample(f"u{i}", "", "train", "s",
                            torch.randint(0, units, (tokens - 3,), generator=g).tolist(), labels[i % 12])
                for i in range(batch_size)]
    spec = build_spec("lid", {"train": examples})  # plain single-label classification
    verb = build_verbalizer("frequency", spec, dictionary, examples)
    return lm, spec, verb, Collator(spec, verb, dictionary, max_len=lm.cfg.max_positions)(examples)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    lm, spec, verb, batch = kws_shaped_task(args.config, args.units, args.tokens, args.batch)
    model = build_prompted(lm, spec, verb, PromptConfig(method="deep_prompt", length=args.prompt_length,
                                                        init="random"), seed=0)
    model.train()
    params = model.trainable_parameters()
    opt = torch.optim.Adam(params, lr=1e-4)
    device = torch.device("cpu")
    times: dict[bool, list[float]] = {False: [], True: []}
    for step in range(2 * (args.steps + 1)):
        bf16 = bool(step % 2)
        t0 = time.perf_counter()
        with step_autocast(device, TrainConfig(cpu_bf16=bf16)):
            loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step >= 2:  # the first step of each precision warms up (allocations, oneDNN kernels)
            times[bf16].append(time.perf_counter() - t0)
    fp32, bf = statistics.median(times[False]), statistics.median(times[True])
    return {"config": args.config, "ulm_params": lm.num_parameters(), "batch": list(batch.tokens.shape),
            "threads": args.threads, "native_bf16": cpu_has_native_bf16(), "cpu": platform.processor() or
            platform.machine(), "fp32_step_s": round(fp32, 4), "bf16_step_s": round(bf, 4),
            "ratio_bf16_to_fp32": round(bf / fp32, 3), "steps": args.steps, "reference": "float32 step"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="small", help="uLM size (spkit.ulm.model.CONFIGS; spkit-base: small)")
    p.add_argument("--batch", type=int, default=32, help="sequences per step (the presets' batch size)")
    p.add_argument("--tokens", type=int, default=50, help="tokens per sequence (a KWS clip's units + label)")
    p.add_argument("--prompt-length", type=int, default=20)
    p.add_argument("--units", type=int, default=200, help="unit vocabulary K (spkit-base: 200)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per precision")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (a main-job worker: 1)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prompt_step_bf16.json")
    args = p.parse_args(argv)
    r = measure(args)
    note = "" if r["native_bf16"] else " (no native bf16 here: the trainer keeps float32, both rows are)"
    print(f"| precision | step s | ratio |\n|---|---:|---:|\n"
          f"| float32 (reference) | {r['fp32_step_s']} | 1.00 |\n"
          f"| bf16 autocast | {r['bf16_step_s']} | {r['ratio_bf16_to_fp32']:.2f} |{note}")
    write_json(args.out, r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

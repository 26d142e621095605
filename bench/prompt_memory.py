"""Peak memory of one training step: prompt tuning vs full fine-tuning of GSLM's uLM size.

Claim checked: at ``transformer_lm_big`` size (151M parameters; random weights, the memory does not depend
on their values), deep-prompt tuning peaks at no more than half the memory of full fine-tuning.

Each method runs in a **fresh subprocess** (so one method's allocations cannot hide in another's peak):
build the uLM, wrap it (:func:`spkit.prompt.model.build_prompted` for prompts,
:class:`spkit.prompt.finetune.FineTunedULM` for fine-tuning), build one batch of ``--batch`` sequences of
about ``--tokens`` tokens in the tasks' format (``[</s>, units, <sep>, label]``, :class:`Collator`), then
run ``--steps`` training steps exactly as the trainer does (``model.loss`` -> backward -> clip -> Adam
step). Two steps by default: Adam's two moment buffers are created by the first ``opt.step()``, *after*
that step's activations were freed, so a single step under-states fine-tuning's steady-state peak
(weights + Adam moments + activations + gradients); both include the optimizer state. Measured:

* CPU: the process's lifetime peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``),
  which includes the interpreter, torch and the model weights (what a machine must have), and the
  increase over the RSS after building the model (what training adds).
* CUDA (``--device cuda``): ``torch.cuda.max_memory_allocated`` (tensors only), likewise.

Usage::

    python bench/prompt_memory.py                    # CPU, 8 x 200 tokens, deep/input prompts vs finetune
    python bench/prompt_memory.py --device cuda      # on a GPU
    python bench/prompt_memory.py --config tiny      # quick check of the script itself

Prints a table and writes ``bench/results/prompt_memory.json`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("deep_prompt", "input_prompt", "finetune")


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmRSS")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One method, one process: returns the measurements as a dict (printed as JSON by ``main``)."""
    import torch

    rss_torch = _rss_mb()  # the CUDA build of torch alone is ~660 MiB resident
    from spkit.prompt.finetune import FineTunedULM
    from spkit.prompt.model import PromptConfig, build_prompted
    from spkit.prompt.tasks import Collator, TaskExample, build_spec
    from spkit.prompt.verbalizer import build_verbalizer
    from spkit.ulm.dictionary import UnitDictionary
    from spkit.ulm.model import CONFIGS, UnitLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    rss_imports = _rss_mb()
    dictionary = UnitDictionary.from_units(range(args.units))  # K=100 -> 104 tokens, GSLM's vocabulary
    lm = UnitLM(CONFIGS[args.config](len(dictionary))).to(device)
    # A 12-class task; every input has tokens - 3 units so that [</s>, units, <sep>, label] ~ --tokens long.
    g = torch.Generator().manual_seed(0)
    labels = [f"w{i}" for i in range(12)]
    examples = [TaskExample(f"u{i}", "", "train", "s", torch.randint(0, args.units, (args.tokens - 3,),
                                                                       generator=g).tolist(), labels[i % 12])
                for i in range(args.batch)]
    spec = build_spec("lid", {"train": examples})  # plain single-label classification
    verb = build_verbalizer("frequency", spec, dictionary, examples)
    batch = Collator(spec, verb, dictionary, max_len=lm.cfg.max_positions)(examples).to(device)
    if args.method == "finetune":
        model = FineTunedULM(lm, spec, verb)
    else:
        cfg = PromptConfig(method="deep_prompt" if args.method == "deep_prompt" else "input_prompt",
                           length=args.prompt_length, init="random")
        model = build_prompted(lm, spec, verb, cfg, seed=0)
    # Block-level activation checkpointing: what a memory-bound user turns on (TrainConfig
    # .checkpoint_activations); applied to the methods chosen by --checkpoint-activations.
    lm.checkpoint_activations = args.checkpoint_activations == "all" or (
        args.checkpoint_activations == "prompts" and args.method != "finetune")
    model.train()
    params = model.trainable_parameters()
    opt = torch.optim.Adam(params, lr=1e-4)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / 2 ** 20
    rss_model = _rss_mb()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        # As the trainer: bf16 autocast on CUDA, fp32 on the CPU.
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    out: dict[str, Any] = {
        "method": args.method, "config": args.config, "device": str(device),
        "ulm_params": lm.num_parameters(), "trainable_params": model.num_trainable(),
        "checkpoint_activations": lm.checkpoint_activations,
        "batch": list(batch.tokens.shape), "label_tokens": int(batch.label_mask.sum()),
        "step_s": [round(t, 3) for t in times], "loss": float(loss),
    }
    if device.type == "cuda":
        out.update({"peak_mb": torch.cuda.max_memory_allocated(device) / 2 ** 20, "after_build_mb": base,
                    "measure": "torch.cuda.max_memory_allocated"})
    else:
        out.update({"peak_mb": _maxrss_mb(), "after_build_mb": rss_model, "after_imports_mb": rss_imports,
                    "after_torch_import_mb": rss_torch, "measure": "ru_maxrss of a fresh process"})
    out["train_increase_mb"] = out["peak_mb"] - out["after_build_mb"]
    # What the method itself needs: the peak above a bare ``import torch`` (weights, grads, Adam,
    # activations).
    out["method_mb"] = out["peak_mb"] - out.get("after_torch_import_mb", 0.0)
    return out


def run_method(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`worker` for ``method`` in a fresh Python process; returns its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--config", args.config,
           "--batch", str(args.batch), "--tokens", str(args.tokens),
           "--prompt-length", str(args.prompt_length), "--steps", str(args.steps),
           "--threads", str(args.threads), "--device", args.device, "--units", str(args.units),
           "--checkpoint-activations", args.checkpoint_activations]
    env = dict(os.environ)
    if args.mmap_threshold:
        # A fixed glibc mmap threshold returns freed tensors to the OS at once, so the peak RSS follows the
        # live tensors instead of heap slack (glibc's dynamic threshold otherwise keeps up to 32 MiB blocks
        # on the heap: +360 MiB on deep prompts' forward pass at 151M, measured).
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]], ref: dict[str, Any]) -> str:
    cpu = "method_mb" in ref and "after_torch_import_mb" in ref
    head = (f"| method | trainable params | peak MiB ({rows[0]['measure']}) | peak / finetune | "
            + ("peak above `import torch` MiB | ratio | " if cpu else "") + "training adds MiB | step s |")
    lines = [head, "|---|---:|---:|---:|" + ("---:|---:|" if cpu else "") + "---:|---:|"]
    for r in rows:
        extra = f"{r['method_mb']:.0f} | {r['method_mb'] / ref['method_mb']:.2f} | " if cpu else ""
        lines.append(f"| {r['method']} | {r['trainable_params']:,} | {r['peak_mb']:.0f} | "
                     f"{r['peak_mb'] / ref['peak_mb']:.2f} | {extra}{r['train_increase_mb']:.0f} | "
                     f"{max(r['step_s']):.1f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="transformer_lm_big", help="uLM size (spkit.ulm.model.CONFIGS)")
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--tokens", type=int, default=200, help="tokens per sequence")
    p.add_argument("--prompt-length", type=int, default=20, help="prompt length L")
    p.add_argument("--steps", type=int, default=2,
                   help="training steps per method (2: the steady state, where Adam's moments exist during "
                        "the forward and backward pass; the first step allocates them only after backward)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (a shared machine: 1)")
    p.add_argument("--units", type=int, default=100, help="unit vocabulary K (GSLM: 100)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--mmap-threshold", type=int, default=131072,
                   help="MALLOC_MMAP_THRESHOLD_ for the CPU workers (bytes; 0: glibc's dynamic default)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--checkpoint-activations", choices=("none", "prompts", "all"), default="prompts",
                   help="block-level activation checkpointing for which methods (default: prompt methods)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prompt_memory.json")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        args.method = args.worker
        print(json.dumps(worker(args)))
        return 0
    if "finetune" not in args.methods:
        raise SystemExit("--methods must include finetune (the reference)")
    rows = []
    for m in args.methods:
        print(f"running {m} ({args.config}, batch {args.batch} x {args.tokens} tokens, {args.device}) ...",
              file=sys.stderr, flush=True)
        rows.append(run_method(m, args))
    ref = next(r for r in rows if r["method"] == "finetune")
    print(table(rows, ref))
    deep = next((r for r in rows if r["method"] == "deep_prompt"), None)
    verdict = None
    if deep is not None:
        ratio = deep["peak_mb"] / ref["peak_mb"]
        verdict = {"deep_prompt_over_finetune": ratio, "at_most_half": ratio <= 0.5}
        print(f"\ndeep prompt peak / full fine-tuning peak = {ratio:.2f} "
              f"({'PASS' if ratio <= 0.5 else 'FAIL'}: must be <= 0.5)")
        if "method_mb" in ref:
            m_ratio = deep["method_mb"] / ref["method_mb"]
            verdict.update({"above_torch_import_ratio": m_ratio,
                            "above_torch_import_at_most_half": m_ratio <= 0.5})
            print(f"above a bare `import torch`: {deep['method_mb']:.0f} / {ref['method_mb']:.0f} MiB "
                  f"= {m_ratio:.2f}")
    sys.path.insert(0, str(ROOT))
    from spkit.io import write_json

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"}
    write_json(args.out, {"settings": settings,
                          "machine": {"python": platform.python_version(), "platform": platform.platform()},
                          "rows": rows, "verdict": verdict})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if verdict is None or verdict["at_most_half"] else 1


if __name__ == "__main__":
    sys.exit(main())

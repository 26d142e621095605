"""``spkit train-ulm``: pretrain the unit LM on GSLM unit files (works under ``torchrun`` for DDP).

    spkit train-ulm --units-train train.units --units-valid valid.units --out runs/ulm --config tiny \\
        --max-steps 2000
    torchrun --nproc_per_node 2 -m spkit train-ulm ...   # multi-GPU / multi-process
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from spkit.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--units-train", required=True, help="training units, one 'name|u1 u2 ...' line each")
    parser.add_argument("--units-valid", default=None, help="validation units (unseen speakers)")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, dict.txt, history.json)")
    parser.add_argument(
        "--config",
        default="tiny",
        help="model size: tiny, small, transformer_lm, transformer_lm_big (GSLM's)",
    )
    parser.add_argument("--max-steps", type=int, default=1000, help="optimizer steps (LR schedule length)")
    parser.add_argument("--max-cpu-seconds", type=float, default=None, help="stop after this much CPU time")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint_last.pt")
    parser.add_argument("--batch-size", type=int, default=32, help="global sequences per step")
    parser.add_argument("--max-len", type=int, default=512, help="longest training sequence (tokens)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--schedule", choices=("cosine", "inverse_sqrt"), default="cosine")
    parser.add_argument("--dropout", type=float, default=None, help="override the config's dropout")
    parser.add_argument("--no-dedup", action="store_true", help="keep repeated consecutive units")
    parser.add_argument(
        "--num-units",
        type=int,
        default=None,
        help="fixed dictionary of units 0..K-1 (default: the units seen in training)",
    )
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument(
        "--cpu-bf16",
        action="store_true",
        help="bf16 autocast on CPU (~2x faster with AVX512-bf16/AMX; float32 weights)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse what would fail later, before torch loads: missing unit files, an unknown model size, a
    resume without a checkpoint, budgets that are not positive."""
    from spkit.ulm.model import CONFIGS

    for option, path in (("--units-train", args.units_train), ("--units-valid", args.units_valid)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"{option} {path}: no such unit file")
    if args.config not in CONFIGS:
        raise UserError(f"--config {args.config}: unknown model size; choose one of {', '.join(CONFIGS)}")
    if args.resume and not (Path(args.out) / "checkpoint_last.pt").is_file():
        raise UserError(f"--resume: {Path(args.out) / 'checkpoint_last.pt'}: no checkpoint to resume from")
    for option, value in (("--max-steps", args.max_steps), ("--batch-size", args.batch_size),
                          ("--max-len", args.max_len), ("--num-units", args.num_units)):
        if value is not None and value < 1:
            raise UserError(f"{option} {value}: must be at least 1")


def main(args: argparse.Namespace) -> int:
    check_arguments(args)
    import torch

    from spkit.ulm.dictionary import UnitDictionary
    from spkit.ulm.train import ULMTrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {} if args.dropout is None else {"dropout": args.dropout}
    cfg = ULMTrainConfig(
        model=args.config,
        model_overrides=overrides,
        max_steps=args.max_steps,
        max_cpu_seconds=args.max_cpu_seconds,
        batch_size=args.batch_size,
        max_len=args.max_len,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        schedule=args.schedule,
        deduplicate=not args.no_dedup,
        eval_every=args.eval_every,
        save_every=args.save_every,
        seed=args.seed,
        cpu_bf16=args.cpu_bf16,
    )
    dictionary = UnitDictionary.from_units(range(args.num_units)) if args.num_units else None
    summary = train(
        cfg,
        args.units_train,
        args.units_valid,
        args.out,
        resume=args.resume,
        progress=not args.no_progress,
        dictionary=dictionary,
    )
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        print(json.dumps(summary, indent=2))
    return 0

"""``spkit pretrain-base``: build (or resume) spkit-base, the kit's shipped pretrained models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the shipped folder (e.g. models/spkit-base)")
    parser.add_argument(
        "--preset",
        choices=("smoke", "default"),
        default="default",
        help="smoke: seconds (tests); default: the shipped models (CPU-hours)",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="resumable working state (default: OUT.work beside OUT)"
    )
    parser.add_argument(
        "--data-root", type=Path, default=None, help="where corpora are synthesized (default: data/corpora)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the work folder's run (without it, an existing work folder is an error)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="stop HuBERT training after this many seconds in this call (checkpointed)",
    )
    parser.add_argument(
        "--until",
        default=None,
        help="stop after this stage (corpus, pack, hubert, select, kmeans, units, ulm, export)",
    )
    parser.add_argument(
        "--targets",
        choices=("phones", "mfcc_kmeans"),
        default="phones",
        help="iteration 1's targets: the synthesizer's phone labels per frame (v2, a supervised topline) or "
        "k-means of MFCC features (v1, self-supervised)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the preset's)")


def main(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from spkit.data.base import DataError
    from spkit.io import sweep_temporaries
    from spkit.recipes.spkit_base import STAGES, preset_recipe, pretrain_base
    from spkit.synth.corpora import SynthError
    from spkit.synth.pretrain_text import TextSourceError

    work = args.work or args.out.with_name(args.out.name + ".work")
    if (work / "state.json").is_file() and not args.resume:
        print(
            f"spkit pretrain-base: error: {work} holds an earlier run; pass --resume to continue it "
            "or choose another --work",
            file=sys.stderr,
        )
        return 2
    if args.until is not None and args.until not in STAGES:
        print(
            f"spkit pretrain-base: error: unknown stage {args.until!r}; choose one of {', '.join(STAGES)}",
            file=sys.stderr,
        )
        return 2
    for folder in (work, args.out):  # a killed build's half-written files, never renamed into place
        for tmp in sweep_temporaries(folder):
            print(f"spkit pretrain-base: removed {tmp}, left by an interrupted write", file=sys.stderr)
    recipe = preset_recipe(args.preset, targets=args.targets)
    if args.threads:
        recipe = dataclasses.replace(recipe, threads=args.threads)
    try:
        state = pretrain_base(
            args.out,
            args.preset,
            work=work,
            data_root=args.data_root,
            max_seconds=args.max_seconds,
            until=args.until,
            recipe=recipe,
        )
    except (DataError, SynthError, TextSourceError, ValueError) as e:
        print(f"spkit pretrain-base: error: {e}", file=sys.stderr)
        return 2
    done = [s for s in STAGES if s in state["stages"]]
    left = [s for s in STAGES if s not in state["stages"]]
    print(json.dumps({"work": str(work), "done": done, "left": left}))
    if left and args.until is None:
        print(f"paused before {left[0]!r}; rerun with --resume to continue", file=sys.stderr)
    return 0

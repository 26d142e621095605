"""Where a task's information goes along the unit pipeline: supervised probes on one run's clips.

The same BiGRU probe (:mod:`spkit.analysis.probes`) is trained on the task's training clips as 80-band
log-mel, as the run's continuous SSL layer, as frame-level k-means units and as deduplicated units, and
scored on the test split (unseen speakers); the drop between views is what each step loses. The
deduplicated-unit probe is a practical ceiling for prompts on those units.

Usage::

    python bench/unit_information.py --run runs/default --task kws [--epochs 15] [--seeds 0 1 2]

Prints a table and writes ``bench/results/unit_information.json`` (atomically).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    from spkit.analysis.probes import VIEWS, information_probe
    from spkit.io import write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a run folder with units/ (notebook 01)")
    p.add_argument("--task", default="kws", help="kws, intent or lid")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "unit_information.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    res = information_probe(args.run, args.task, epochs=args.epochs, seeds=args.seeds)
    print(f"{args.task} ({res['classes']} classes, {res['clips']}), test accuracy of the probe:")
    for v in VIEWS:
        r = res["views"][v]
        print(f"  {v:<12} {100 * r['mean']:5.1f} ± {100 * r['std']:.1f} %")
    write_json(args.out, {"run": str(args.run), "epochs": args.epochs, "seeds": args.seeds, **res,
                          "machine": platform.processor() or platform.machine()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Collect the runs of scripts/prompt_convergence.py into the study's record and its table.

usage: python scripts/prompt_convergence_record.py RUNS_DIR OUT.json

The record (``spkit.doc_tables``) keeps every run (``runs[]``: settings, per-epoch validation curve, test
score) and the table docs/experiments/prompt-convergence.md shows, computed from them: best validation
accuracy, the optimizer steps to reach 90 % of it, and the test accuracy at the best epoch.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def steps_to(run: dict, share: float = 0.9) -> int:
    """Optimizer steps until the validation metric first reaches ``share`` of its best."""
    best = max(c[1] for c in run["curve"])
    return next(c[0] for c in run["curve"] if c[1] >= share * best) * run["steps_per_epoch"]


def main(runs_dir: str, out: str) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(Path(runs_dir).glob("*.json"))]
    rows = []
    for r in sorted(runs, key=lambda r: (r["task"], r["name"], r["seed"])):
        settings = ", ".join(f"{k} {v}" for k, v in r["kw"].items() if k not in ("epochs", "out", "ulm"))
        best = max(c[1] for c in r["curve"])
        rows.append([r["name"], settings, str(r["seed"]), f"{100 * best:.1f}", str(steps_to(r)),
                     f"{len(r['curve']) * r['steps_per_epoch']}", f"{100 * r['test']:.1f}"])
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()
    record = {
        "format": "spkit.doc_tables",
        "provenance": {
            "date": "2026-12-06",
            "command": "python scripts/prompt_convergence.py RUN kws NAME 0 epochs=20 KEY=VALUE... "
                       "(runs[].kw), "
                       "RUN = notebooks 01-02 of `spkit run --preset default` on spkit-base v1; then "
                       "python scripts/prompt_convergence_record.py runs/convergence " + out,
            "machine": "the kit's 2-core CPU machine, one torch thread a run, shared with spkit-base v2's "
                       "pretraining and other jobs",
            "commit": commit,
            "source": "computed from runs[] of this file",
        },
        "tables": {"recipes": {"page": "docs/experiments/prompt-convergence.md",
                               "columns": ["recipe", "settings", "seed", "best valid %",
                                           "steps to 90 % of best", "steps run", "test %"],
                               "rows": rows}},
        "runs": runs,
    }
    Path(out).write_text(json.dumps(record, indent=1) + "\n")
    for row in rows:
        print(" | ".join(row))


if __name__ == "__main__":
    main(*sys.argv[1:3])

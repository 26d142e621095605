"""Redraw a few-shot figure of docs/experiments/few-shot-converged.md from a few-shot record (a
results.json, e.g. docs/results/few_shot_converged.json), as notebook 03 draws it (spkit.viz.few_shot_figure).

    .venv/bin/python scripts/few_shot_figure.py docs/results/few_shot_converged.json kws \\
        docs/few_shot_kws.png --point deep_prompt:all=63.8 --point downstream:5=30.4+-2.1 ...

``--point METHOD:N=MEAN[+-STD]`` (percent) adds a point the record does not hold: a run on every clip
(``N=all``, one seed) or a cell measured before the record (the page marks those †); the record's own entries
win. The exact command behind docs/few_shot_kws.png is in docs/experiments/few-shot-converged.md. Needs
Chromium for the PNG (kaleido; scripts/ensure_chromium.sh installs it).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from spkit.io import atomic_path
from spkit.prompt.results import shots_order
from spkit.recipes.prompting import few_shot_curves
from spkit.report import chromium_available
from spkit.viz import few_shot_figure

TITLES = {"kws": "Few-shot KWS, converged (3 seeds; all: seed 0)",
          "intent": "Few-shot IC, converged (3 seeds; all: seed 0)"}
POINT = re.compile(r"(?P<method>\w+):(?P<n>\d+|all)=(?P<mean>[\d.]+)(\+-(?P<std>[\d.]+))?")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("record", type=Path)
    p.add_argument("task")
    p.add_argument("png", type=Path)
    p.add_argument("--point", action="append", default=[], metavar="METHOD:N=MEAN[+-STD]")
    a = p.parse_args()
    record = few_shot_curves(json.loads(a.record.read_text(encoding="utf-8")), a.task)
    if not record:
        raise SystemExit(f"{a.record}: no few_shot.{a.task} entries")
    points = {m: {n: (100 * mean, 100 * std) for n, mean, std in pts} for m, pts in record.items()}
    for item in a.point:
        m = POINT.fullmatch(item)
        if not m:
            raise SystemExit(f"--point {item!r}: expected METHOD:N=MEAN[+-STD], e.g. downstream:5=30.4+-2.1")
        points.setdefault(m["method"], {}).setdefault(m["n"], (float(m["mean"]), float(m["std"] or 0.0)))
    curves = {meth: [(n, *by_n[n]) for n in shots_order(by_n)] for meth, by_n in points.items()}
    if not chromium_available():
        raise SystemExit("no Chromium for the PNG export: run scripts/ensure_chromium.sh")
    fig = few_shot_figure(curves, TITLES.get(a.task, f"Few-shot {a.task}"), metric="test accuracy (%)")
    with atomic_path(a.png) as tmp:
        fig.write_image(str(tmp), format="png", scale=1, width=720)
    print(f"wrote {a.png}")


if __name__ == "__main__":
    main()

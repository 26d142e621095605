"""Redraw a README few-shot figure from a few-shot record (a results.json, e.g.
docs/results/few_shot_converged.json), as notebook 03 draws it (spkit.viz.few_shot_figure).

    .venv/bin/python scripts/few_shot_figure.py docs/results/few_shot_converged.json kws \
        docs/few_shot_kws.png --all deep_prompt=63.8 --all deep_prompt_random_lm=57.4 --all downstream=72.0

``--all METHOD=PERCENT`` adds an ``all`` point (a run on every clip that the record does not hold, one seed);
the record's own ``all`` entries are used when it has them. Needs Chromium for the PNG (kaleido).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from spkit.io import atomic_path
from spkit.recipes.prompting import few_shot_curves
from spkit.report import chromium_available
from spkit.viz import few_shot_figure

TITLES = {"kws": "Few-shot KWS (converged, 3 seeds)", "intent": "Few-shot IC (converged, 3 seeds)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("record", type=Path)
    p.add_argument("task")
    p.add_argument("png", type=Path)
    p.add_argument("--all", action="append", default=[], metavar="METHOD=PERCENT")
    a = p.parse_args()
    curves = few_shot_curves(json.loads(a.record.read_text(encoding="utf-8")), a.task)
    if not curves:
        raise SystemExit(f"{a.record}: no few_shot.{a.task} entries")
    # percent for the reader; std 0 for the one-seed `all` points
    curves = {m: [(n, 100 * mean, 100 * std) for n, mean, std in pts] for m, pts in curves.items()}
    for item in a.all:
        method, _, value = item.partition("=")
        if method in curves and all(n != "all" for n, _, _ in curves[method]):
            curves[method].append(("all", float(value), 0.0))
    if not chromium_available():
        raise SystemExit("no Chromium for the PNG export: run scripts/ensure_chromium.sh")
    fig = few_shot_figure(curves, TITLES.get(a.task, f"Few-shot {a.task}"), metric="test accuracy (%)")
    with atomic_path(a.png) as tmp:
        fig.write_image(str(tmp), format="png", scale=1, width=720)
    print(f"wrote {a.png}")


if __name__ == "__main__":
    main()

"""Slot filling in a run's report: SUPERB's two metrics per method, and predicted vs reference slots."""

from __future__ import annotations

import os
from typing import Any

from spkit.io import read_json
from spkit.layout import RunLayout
from spkit.prompt.results import format_cell
from spkit.prompt.slots import slot_list


def sf_markdown(results: dict[str, Any]) -> str:
    """A Markdown table of the SF methods: slot-type F1 and slot-value CER (mean ± std over seeds, %);
    empty when the results have no ``sf`` task."""
    methods = results.get("tasks", {}).get("sf", {}).get("methods", {})
    if not methods:
        return ""
    rows = []
    for m, e in methods.items():
        cer = format_cell(e["slot_value_cer"]) if "slot_value_cer" in e else "–"
        rows.append(f"| {m} | {format_cell(e)} | {cer} |")
    return "| method | slot-type F1 (%) | slot-value CER (%) |\n|---|---|---|\n" + "\n".join(rows)


def sf_examples(run_dir: str | os.PathLike, method: str = "deep_prompt", n: int = 8) -> list[tuple[str, str]]:
    """``(reference slots, predicted slots)`` of the first ``n`` test clips of ``method``'s lowest seed, from
    its ``eval.json`` (slots written ``type=value; ...``); empty when there is none."""
    base = RunLayout.at(run_dir).root / "prompts" / "sf" / method
    files = sorted(base.glob("seed*/eval.json"), key=lambda p: int(p.parent.name[4:]))
    if not files:
        return []

    def show(tagged: str | None) -> str:
        return "; ".join(f"{t}={v}" for t, v in slot_list(tagged or "")) or "(none)"

    preds = read_json(files[0]).get("predictions", [])[:n]
    return [(show(p["label"]), show(p.get("prediction"))) for p in preds]

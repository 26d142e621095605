"""The README's measured few-shot tables agree with the committed record they come from."""
from __future__ import annotations

import re
from pathlib import Path

from spkit.prompt.results import format_cell, load_results

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "docs" / "results" / "few_shot_converged.json"


def _tables(text: str) -> dict[tuple[str, str], str]:
    """``{(method, n): cell}`` of the markdown tables in ``text``: the method is the first cell's first word,
    n the column header's ``n=...``."""
    cells: dict[tuple[str, str], str] = {}
    header: list[str] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            header = []
            continue
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if row[0] == "Method":
            header = [h.removeprefix("n=") for h in row[1:]]
        elif header and not set(row[0]) <= {"-", ":"}:
            for n, cell in zip(header, row[1:]):
                cells[(row[0].split()[0], n)] = cell
    return cells


def _section() -> dict[str, dict[tuple[str, str], str]]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("**Few-shot, converged**")
    end = readme.index("**Units or prompting?", start)
    kws, _, ic = readme[start:end].partition("\nIC (")
    return {"kws": _tables(kws), "intent": _tables(ic)}


def test_few_shot_readme_tables_match_the_record():
    record = load_results(RECORD)  # validates the results.json format
    tables = _section()
    checked = 0
    for task, by_method in record["few_shot"].items():
        for method, by_n in by_method.items():
            for n, entry in by_n.items():
                if n == "all":
                    continue
                cell = tables[task].get((method, n))
                assert cell is not None, f"README few-shot table lacks {task}/{method}/n={n}"
                seeds = entry.get("n_seeds", 1)
                want = format_cell(entry) + (f" ({seeds} seeds)" if 1 < seeds < 3 else "")
                assert cell == want, f"README {task}/{method}/n={n}: {cell!r}, the record says {want!r}"
                checked += 1
    assert tables["kws"] and tables["intent"] and checked > 0
    # a plain "mean ± std" cell comes from the record; cells measured before it are marked "†"
    for task, cells in tables.items():
        for (method, n), cell in cells.items():
            if re.fullmatch(r"\d+\.\d ± \d+\.\d", cell):
                in_record = n in record["few_shot"].get(task, {}).get(method, {})
                assert in_record, f"README {task}/{method}/n={n}: {cell} is not in {RECORD.name} (mark it †)"

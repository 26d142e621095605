"""The README's measured few-shot tables agree with the committed record they come from."""
from __future__ import annotations

import re
from pathlib import Path

from spkit.prompt.results import format_cell, load_results

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "docs" / "results" / "few_shot_converged.json"
VERB_RECORD = REPO / "docs" / "results" / "ic_learnable_verbalizer.json"
VERB_MARK = "**IC with the learnable verbalizer**"


def _tables(text: str) -> dict[tuple[str, str], str]:
    """``{(method, n): cell}`` of the markdown tables in ``text``: the method is the first cell's first word,
    n the column header's ``n=...`` (or ``all``)."""
    cells: dict[tuple[str, str], str] = {}
    header: list[str] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            header = []
            continue
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if row[0] == "Method":
            header = [h.removeprefix("n=").split()[0] for h in row[1:]]  # "all (seed 0)" -> "all"
        elif header and not set(row[0]) <= {"-", ":"}:
            for n, cell in zip(header, row[1:]):
                cells[(row[0].split()[0], n)] = cell
    return cells


def _section() -> dict[str, dict[tuple[str, str], str]]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("**Few-shot, converged**")
    end = readme.index("**Units or prompting?", start)
    kws, _, ic = readme[start:end].partition("\nIC (")
    ic, _, verb = ic.partition(VERB_MARK)
    return {"kws": _tables(kws), "intent": _tables(ic), "intent_verbalizer": _tables(verb)}


def _want(n: str, entry: dict) -> str:
    """The README cell for a record entry: ``mean ± std`` (`` (k seeds)`` when fewer than 3); the ``all
    (seed 0)`` column holds seed 0's score alone."""
    if n == "all":
        assert entry["seed_ids"] == [0], f"'all (seed 0)' holds seed 0 alone, not seeds {entry['seed_ids']}"
        return format_cell(entry).removesuffix(" (1 seed)")
    seeds = entry.get("n_seeds", 1)
    return format_cell(entry) + (f" ({seeds} seeds)" if 1 < seeds < 3 else "")


def test_few_shot_readme_tables_match_the_record():
    record = load_results(RECORD)  # validates the results.json format
    tables = _section()
    checked = 0
    for task, by_method in record["few_shot"].items():
        for method, by_n in by_method.items():
            for n, entry in by_n.items():
                cell = tables[task].get((method, n))
                assert cell is not None, f"README few-shot table lacks {task}/{method}/n={n}"
                want = _want(n, entry)
                assert cell == want, f"README {task}/{method}/n={n}: {cell!r}, the record says {want!r}"
                checked += 1
    assert tables["kws"] and tables["intent"] and checked > 0
    # a plain "mean ± std" cell comes from the record; cells measured before it are marked "†"
    for task in ("kws", "intent"):
        for (method, n), cell in tables[task].items():
            if re.fullmatch(r"\d+\.\d ± \d+\.\d", cell):
                in_record = n in record["few_shot"].get(task, {}).get(method, {})
                assert in_record, f"README {task}/{method}/n={n}: {cell} is not in {RECORD.name} (mark it †)"


def test_ic_learnable_verbalizer_table_matches_its_record():
    record = load_results(VERB_RECORD)
    cells = _section()["intent_verbalizer"]
    entries = [(m, n, e) for m, by_n in record["few_shot"]["intent"].items() for n, e in by_n.items()]
    assert entries and len(cells) == len(entries), f"README's {VERB_MARK} table and {VERB_RECORD.name} differ"
    for method, n, entry in entries:
        assert entry["settings"]["verbalizer"] == "learnable", f"{method}/n={n}: not the learnable verbalizer"
        cell, want = cells.get((method, n)), _want(n, entry)
        assert cell == want, f"README {VERB_MARK} {method}/n={n}: {cell!r}, the record says {want!r}"

"""Every table of numbers in README.md and docs/ agrees with the committed record it names.

A markdown table whose body holds a digit carries, on the lines just above it, one or more markers:

* ``<!-- record: PATH#TABLE -->``: its numbers come from the committed record ``PATH``, checked here: a
  ``results.json`` (:func:`spkit.prompt.results.load_results`: the few-shot tables, cell by cell against
  ``few_shot.<TABLE>``), a probe result of ``bench/unit_information.py`` (``#views``), or a
  ``spkit.doc_tables`` record (``docs/results/*.json``: measurements whose run folder was not committed,
  transcribed with their provenance; every number of every cell must equal the record's);
* ``<!-- settings: why -->``: its numbers are settings or definitions (corpus sizes, budgets, dimensions),
  not measurements; such a table may not hold a ``±`` or the word "measured".

The README also stays a five-minute read: at most 250 lines, no dated experiment log.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from spkit.prompt.results import format_cell, load_results

REPO = Path(__file__).resolve().parents[1]


def generated_card(page: Path) -> bool:
    """A model card that ``spkit pretrain-base`` writes from the ``spkit-base.json`` beside it (e.g.
    ``docs/spkit-base-v1/README.md``): its tables are that record's, rendered by the recipe, not typed."""
    return page.name == "README.md" and (page.parent / "spkit-base.json").is_file()


PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "docs").rglob("*.md") if not generated_card(p))]
MARK = re.compile(r"<!--\s*(record|settings):\s*(.*?)\s*-->")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
DOC_TABLES = "spkit.doc_tables"
PROVENANCE = ("date", "command", "machine", "commit", "source")


@dataclass
class Table:
    page: Path
    line: int  # 1-based line of the header row
    rows: list[list[str]]  # header first; the |---| row left out
    marks: list[tuple[str, str]] = field(default_factory=list)  # ("record", "PATH#TABLE") / ("settings", why)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def body(self) -> list[list[str]]:
        return self.rows[1:]


def md_tables(text: str, page: Path = REPO / "README.md") -> list[Table]:
    """The markdown tables of ``text`` (outside code blocks), each with the markers on the lines just
    above."""
    tables: list[Table] = []
    lines = text.splitlines()
    in_code, current = False, None
    for i, line in enumerate([*lines, ""]):
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("|"):
            row = [c.strip() for c in line.strip().strip("|").split("|")]
            if current is None:
                marks, j = [], i - 1
                while j >= 0 and (m := MARK.fullmatch(lines[j].strip())):
                    marks.insert(0, (m.group(1), m.group(2)))
                    j -= 1
                current = Table(page, i + 1, [row], marks)
            elif not set("".join(row)) <= set("-: "):
                current.rows.append(row)
            continue
        if current is not None:
            tables.append(current)
            current = None
    return tables


def all_tables() -> list[Table]:
    return [t for p in PAGES for t in md_tables(p.read_text(encoding="utf-8"), p)]


def shows_numbers(table: Table) -> bool:
    """A digit anywhere in the body past the first column (the first names the row)."""
    return any(re.search(r"\d", cell) for row in table.body for cell in row[1:])


def numbers(cell: str) -> list[str]:
    return NUMBER.findall(cell)


def doc_table_mismatches(table: Table, record_table: dict) -> list[str]:
    """Where ``table``'s numbers differ from a ``spkit.doc_tables`` record's table, cell by cell (header
    too)."""
    want = [record_table["columns"], *record_table["rows"]]
    if len(want) != len(table.rows):
        return [f"{len(table.rows) - 1} rows, the record has {len(want) - 1}"]
    out = []
    for r, (got_row, want_row) in enumerate(zip(table.rows, want)):
        if len(got_row) != len(want_row):
            out.append(f"row {r}: {len(got_row)} cells, the record has {len(want_row)}")
            continue
        for got, exp in zip(got_row, want_row):
            if numbers(got) != numbers(exp):
                out.append(f"row {r} ({got_row[0]!r}): {got!r}, the record says {exp!r}")
    return out


def record_marks(table: Table) -> list[tuple[Path, str]]:
    return [(REPO / spec.partition("#")[0], spec.partition("#")[2]) for kind, spec in table.marks
            if kind == "record"]


# ------------------------------------------------------------------------------------------------
# The rules
# ------------------------------------------------------------------------------------------------

def test_every_table_with_numbers_names_its_record():
    unmarked = [t.where for t in all_tables() if shows_numbers(t) and not t.marks]
    assert unmarked == [], f"tables with numbers but no <!-- record: --> or <!-- settings: -->: {unmarked}"
    for t in all_tables():
        for path, name in record_marks(t):
            assert path.is_file(), f"{t.where}: no record {path}"
            assert name, f"{t.where}: a record marker names PATH#TABLE"


def test_settings_tables_hold_no_measurements():
    for t in all_tables():
        if ("settings" in dict(t.marks)) and not record_marks(t):
            body = " ".join(c for row in t.body for c in row)
            assert not re.search(r"\d\s*±|measured", body), f"{t.where}: measurements in a settings table"


def test_transcribed_tables_match_their_records():
    checked = 0
    for t in all_tables():
        for path, name in record_marks(t):
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("format") != DOC_TABLES:
                continue
            missing = [k for k in PROVENANCE if not record.get("provenance", {}).get(k)]
            assert missing == [], f"{path.name}: provenance lacks {missing}"
            assert name in record["tables"], f"{t.where}: {path.name} has no table {name!r}"
            wrong = doc_table_mismatches(t, record["tables"][name])
            assert wrong == [], f"{t.where} against {path.name}#{name}: {wrong}"
            checked += 1
    assert checked >= 15


def test_every_committed_table_record_is_shown():
    shown = {(path.name, name) for t in all_tables() for path, name in record_marks(t)}
    for path in sorted((REPO / "docs" / "results").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        names = record["tables"] if record.get("format") == DOC_TABLES else record.get("few_shot", {})
        for name in names:
            assert (path.name, name) in shown, f"{path.name}#{name} is shown by no table in README or docs"


def test_the_checker_can_fail(tmp_path):
    page = tmp_path / "x.md"
    text = ("words\n<!-- record: docs/results/r.json#t -->\n| Method | n=1 |\n|---|---:|\n"
            "| a | 1.5 ± 0.2 |\n\n| plain | 3 |\n|---|---|\n| b | 4 |\n")
    first, second = md_tables(text, page)
    assert first.marks == [("record", "docs/results/r.json#t")] and first.rows[1] == ["a", "1.5 ± 0.2"]
    assert second.marks == [] and shows_numbers(second)
    record = {"columns": ["Method", "n=1"], "rows": [["a", "1.5 ± 0.2"]]}
    assert doc_table_mismatches(first, record) == []
    record["rows"][0][1] = "1.5 ± 0.3"
    assert doc_table_mismatches(first, record) == ["row 1 ('a'): '1.5 ± 0.2', the record says '1.5 ± 0.3'"]
    assert md_tables("```\n| a | 1 |\n```\n", page) == []  # a table in a code block is not a table


# ------------------------------------------------------------------------------------------------
# Records that are results.json files: the few-shot tables
# ------------------------------------------------------------------------------------------------

def _cells(table: Table) -> dict[tuple[str, str], str]:
    """``{(method, n): cell}``: the method is the first cell's first word, n the header's ``n=...`` (or
    ``all``)."""
    header = [h.removeprefix("n=").split()[0] for h in table.rows[0][1:]]  # "all (seed 0)" -> "all"
    return {(row[0].split()[0], n): cell for row in table.body for n, cell in zip(header, row[1:])}


def _want(n: str, entry: dict) -> str:
    """The cell for a record entry: ``mean ± std`` (`` (k seeds)`` when fewer than 3); the ``all (seed 0)``
    column holds seed 0's score alone."""
    if n == "all":
        assert entry["seed_ids"] == [0], f"'all (seed 0)' holds seed 0 alone, not seeds {entry['seed_ids']}"
        return format_cell(entry).removesuffix(" (1 seed)")
    seeds = entry.get("n_seeds", 1)
    return format_cell(entry) + (f" ({seeds} seeds)" if 1 < seeds < 3 else "")


def _few_shot_tables(record_name: str) -> dict[str, Table]:
    out = {}
    for t in all_tables():
        for path, name in record_marks(t):
            if path.name == record_name:
                assert name not in out, f"two tables show {record_name}#{name}"
                out[name] = t
    return out


@pytest.mark.parametrize("record_name", ["few_shot_converged.json", "ic_learnable_verbalizer.json"])
def test_few_shot_tables_match_their_results_json(record_name):
    record = load_results(REPO / "docs" / "results" / record_name)  # validates the results.json format
    tables = _few_shot_tables(record_name)
    assert set(tables) == set(record["few_shot"]), f"{record_name}: tasks shown {sorted(tables)}"
    for task, by_method in record["few_shot"].items():
        cells = _cells(tables[task])
        for method, by_n in by_method.items():
            for n, entry in by_n.items():
                cell = cells.get((method, n))
                assert cell is not None, f"{tables[task].where}: no cell for {task}/{method}/n={n}"
                assert cell == _want(n, entry), f"{tables[task].where} {method}/n={n}: {cell!r}"
        # a plain "mean ± std" cell comes from the record; cells measured before it are marked "†"
        for (method, n), cell in cells.items():
            if re.fullmatch(r"\d+\.\d ± \d+\.\d", cell):
                where = f"{tables[task].where} {method}/n={n}"
                assert n in by_method.get(method, {}), f"{where}: {cell} is not in the record (mark it †)"


def test_ic_learnable_verbalizer_is_the_learnable_one():
    record = load_results(REPO / "docs" / "results" / "ic_learnable_verbalizer.json")
    for method, by_n in record["few_shot"]["intent"].items():
        for n, entry in by_n.items():
            assert entry["settings"]["verbalizer"] == "learnable", f"{method}/n={n}: another verbalizer"


# ------------------------------------------------------------------------------------------------
# Records that are bench results: the unit-information probe
# ------------------------------------------------------------------------------------------------

PROBE_VIEWS = ("logmel", "features", "frame_units", "units")  # the rows of the probe table, in order


def test_probe_table_matches_the_bench_result():
    (table,) = [t for t in all_tables() for path, name in record_marks(t)
                if path.name == "unit_information.json" and name == "views"]
    views = json.loads((REPO / "bench" / "results" / "unit_information.json").read_text())["views"]
    assert len(table.body) == len(PROBE_VIEWS)
    for row, view in zip(table.body, PROBE_VIEWS):
        shown = re.search(r"\d+\.\d ± \d+\.\d", row[1])
        want = f"{100 * views[view]['mean']:.1f} ± {100 * views[view]['std']:.1f}"
        assert shown and shown.group(0) == want, f"{table.where} {view}: {row[1]!r}, the record says {want}"


# ------------------------------------------------------------------------------------------------
# The README
# ------------------------------------------------------------------------------------------------

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_is_short_and_keeps_no_experiment_log():
    assert len(README.splitlines()) <= 250
    dates = re.findall(r"\b20\d\d-\d\d-\d\d\b", README)
    assert dates == [], f"dated experiment logs belong in docs/experiments/: {dates}"
    assert "make run" in README and "make test" in README


def test_readme_run_time_is_the_records():
    record = json.loads((REPO / "docs" / "results" / "default_run.json").read_text(encoding="utf-8"))
    shown = re.search(r"It took \*\*(\d+\.\d) minutes\*\*", README)
    assert shown, "README states the main job's time"
    assert shown.group(1) == f"{record['time_s']['spkit_run'] / 60:.1f}"


def test_pages_link_to_files_that_exist():
    for page in PAGES:
        text = re.sub(r"<!--.*?-->", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)}: broken link {target}"

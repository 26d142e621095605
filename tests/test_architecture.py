"""The import graph points down: orchestration (recipes, pipeline) is imported only from above it, and the
analyses never import the recipes (they read prompt files; training them is a recipe's job)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "spkit"

# Modules below the recipes that still load run-folder artifacts through them (issue 14, point 2: a
# run-artifact loader module below prompt/, analysis/ and demo is to replace these imports).
KNOWN_UPWARD = {
    ("spkit.prompt.predict", "spkit.recipes.unit_discovery"),
    ("spkit.prompt.predict", "spkit.recipes.unit_lm"),
    ("spkit.demo", "spkit.recipes.unit_discovery"), ("spkit.analysis.probes", "spkit.recipes.prompting"),
    ("spkit.analysis.probes", "spkit.recipes.unit_discovery"),
}


def imports() -> dict[str, set[str]]:
    """``{module: spkit modules it imports}``, function-level imports included."""
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("spkit")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spkit"):
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        out[name] = found
    return out


def test_the_import_parser_sees_function_level_imports():
    graph = imports()
    assert "spkit.recipes.prompting" in graph["spkit.recipes.analysis_prompts"]
    assert "spkit.synth" in graph["spkit.recipes.unit_discovery"]  # imported inside ensure_corpora


def test_nothing_imports_the_pipeline():
    users = sorted(m for m, deps in imports().items() if "spkit.pipeline" in deps and m != "spkit.pipeline")
    assert users == []


def test_recipes_are_imported_only_by_recipes_and_the_pipeline():
    upward = {(m, d) for m, deps in imports().items() for d in deps
              if d.startswith("spkit.recipes.") and d.count(".") == 2 and not m.startswith("spkit.recipes")
              and m != "spkit.pipeline"}
    assert upward <= KNOWN_UPWARD, sorted(upward - KNOWN_UPWARD)


def test_analyses_never_train():
    graph = imports()
    for module in ("spkit.analysis.verbalizer", "spkit.analysis.attention"):
        assert not any(d.startswith(("spkit.recipes", "spkit.pipeline")) for d in graph[module]), module
        assert not any(d.startswith(("spkit.prompt.train", "spkit.ulm.train")) for d in graph[module]), module

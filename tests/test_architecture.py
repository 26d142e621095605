"""The import graph points down: every module imports only from its own layer or the ones below
(docs/ARCHITECTURE.md's table, :data:`LAYERS` here), orchestration (recipes, pipeline) is imported only from
above it, and the analyses never import the recipes (they read prompt files; training them is a recipe's
job)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "spkit"

# The layers of docs/ARCHITECTURE.md, lowest first: (name, module prefixes). A module belongs to the layer of
# its longest matching prefix ("spkit" alone: the package's own top-level helpers).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("spkit", "spkit.errors", "spkit.io", "spkit.layout", "spkit.audio", "spkit.fairseq_compat",
              "spkit.presets", "spkit.cluster")),
    ("data", ("spkit.data", "spkit.synth")),
    ("features", ("spkit.features",)),
    ("units", ("spkit.units",)),
    ("ulm", ("spkit.ulm",)),
    ("artifacts", ("spkit.artifacts",)),
    ("prompt", ("spkit.prompt",)),
    ("analysis", ("spkit.analysis", "spkit.demo", "spkit.vocoder", "spkit.viz")),
    ("recipes", ("spkit.recipes",)),
    ("pipeline", ("spkit.pipeline", "spkit.report", "spkit.cli", "spkit.__main__")),
]


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of ``module``'s layer."""
    best, length = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > length:
                best, length = i, len(p)
    assert best >= 0, f"{module} is in no layer"
    return best


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
    assert upward == set(), sorted(upward)


def test_every_import_points_down():
    graph = imports()
    upward = sorted(f"{m} ({LAYERS[layer_of(m)][0]}) -> {d} ({LAYERS[layer_of(d)][0]})"
                    for m, deps in graph.items() for d in deps if layer_of(d) > layer_of(m))
    assert upward == []
    # the classifier sees through names: a module in a layer above is caught
    assert layer_of("spkit.recipes.unit_lm") > layer_of("spkit.artifacts") > layer_of("spkit.ulm.train")
    assert layer_of("spkit.units.encoder") < layer_of("spkit.prompt.predict") < layer_of("spkit.demo")


def test_run_artifacts_load_from_below_prompt_analysis_and_demo():
    graph = imports()
    for module in ("spkit.prompt.predict", "spkit.demo", "spkit.analysis.probes"):
        assert not any(d.startswith("spkit.recipes") for d in graph[module]), module
    assert "spkit.artifacts" in graph["spkit.prompt.predict"] and "spkit.artifacts" in graph["spkit.demo"]
    assert "spkit.units.encoder" in graph["spkit.prompt.predict"]  # one way from audio to units


def test_analyses_never_train():
    graph = imports()
    for module in ("spkit.analysis.verbalizer", "spkit.analysis.attention", "spkit.analysis.metrics",
                   "spkit.analysis.unit_audio", "spkit.analysis.figures", "spkit.analysis.tables",
                   "spkit.analysis.probes"):
        assert not any(d.startswith(("spkit.recipes", "spkit.pipeline")) for d in graph[module]), module
        assert not any(d.startswith(("spkit.prompt.train", "spkit.ulm.train")) for d in graph[module]), module


def test_one_kmeans():
    """Fitting centres and nearest-centre assignment live in spkit.cluster only (base layer), which the
    pretraining targets (features) and the unit models (units) both build on."""
    graph = imports()
    for user in ("spkit.features.pretrain", "spkit.units.kmeans"):
        assert "spkit.cluster" in graph[user], user
    own = {"assign", "_sq_dists", "_kmeans_pp", "_lloyd", "fit_centers"}
    elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "cluster.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in own:
                elsewhere.append(f"{path.name}: def {node.name}")
            elif isinstance(node, ast.ImportFrom) and node.module == "sklearn.cluster" and any(
                    a.name == "MiniBatchKMeans" for a in node.names):
                elsewhere.append(f"{path.name}: imports MiniBatchKMeans")
    assert elsewhere == []

"""The import graph points down: every module imports only from its own layer or the ones below
(docs/ARCHITECTURE.md's table, :data:`LAYERS` here), orchestration (recipes, pipeline) is imported only from
above it, and the analyses never import the recipes (they read prompt files; training them is a recipe's
job)."""

from __future__ import annotations

import ast
import re
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


# Function-level imports allowed (docs/ARCHITECTURE.md): heavy optional packages, by top-level name ...
HEAVY_OPTIONAL = frozenset({"fairseq", "omegaconf", "plotly", "ipywidgets", "IPython", "playwright",
                            "papermill", "nbconvert", "nbformat", "nbclient", "jupyter_client", "jupyterlab"})


def is_cli_module(path: Path) -> bool:
    """... anything in a command-line module (``spkit/cli.py``, ``*/cli.py``, ``*_cli.py``, ``__main__.py``),
    whose subcommands load their implementations when run, so ``spkit --help`` stays fast ..."""
    return path.name in ("cli.py", "__main__.py") or path.stem.endswith("_cli")


LAZY_MARK = re.compile(r"#\s*lazy:\s*\S")
"""... and an import whose line says why with a ``# lazy: <reason>`` comment (an inherent import cycle)."""


def function_level_imports(source: str) -> list[tuple[int, str]]:
    """``(line, source line)`` of every import inside a function (methods and nested functions included)."""
    lines = source.splitlines()
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child.lineno, "\n".join(lines[child.lineno - 1:child.end_lineno])))
            scope = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, in_function or scope)

    visit(ast.parse(source), False)
    return found


def disallowed_lazy_imports(source: str) -> list[tuple[int, str]]:
    """The function-level imports of ``source`` that are neither of a heavy optional package nor marked
    ``# lazy: <reason>`` (the command-line modules are exempt as a whole: see :func:`is_cli_module`)."""
    out = []
    for line, text in function_level_imports(source):
        stmt = ast.parse(text.strip()).body[0]
        assert isinstance(stmt, (ast.Import, ast.ImportFrom))
        names = [a.name for a in stmt.names] if isinstance(stmt, ast.Import) else [stmt.module or "."]
        if all(n.split(".")[0] in HEAVY_OPTIONAL for n in names) or LAZY_MARK.search(text):
            continue
        out.append((line, text.strip()))
    return out


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


def module_graph(graph: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """``{module: spkit modules it imports}``: each imported name resolved to the longest module it names
    (``spkit.prompt.tasks.TaskSpec`` -> ``spkit.prompt.tasks``; ``from spkit.prompt import tasks`` ->
    ``spkit.prompt.tasks``; ``from spkit.prompt import Verbalizer`` -> the package ``spkit.prompt``). The
    ``from`` part of ``from P import x`` is not an edge of its own: :func:`imports` lists ``P`` beside
    ``P.x``, and ``P.x`` resolves to the submodule, or to ``P`` when ``x`` is a name defined there."""
    graph = imports() if graph is None else graph
    modules = set(graph)

    def named(deps: set[str]) -> set[str]:
        return {d for d in deps if not any(o.startswith(d + ".") for o in deps)}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    return {m: {r for d in named(deps) if (r := resolve(d)) is not None and r != m}
            for m, deps in graph.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The circles of ``graph`` (its strongly connected components of more than one module, or a module that
    imports itself), each sorted, found by Tarjan's algorithm (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    circles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    circles.append(sorted(component))
    return sorted(circles)


def test_no_import_circles():
    """No two spkit modules import each other, directly or through others: the layer table is a picture
    without a loop. Every import counts, function-level and ``TYPE_CHECKING`` ones included (a circle is
    fixed by moving the shared code down into a module both can import, as spkit.prompt.spec and
    spkit.units.encoded/unit_files were)."""
    assert import_circles(module_graph()) == []


def test_the_circle_finder_can_fail():
    graph = {"spkit.a": {"spkit.b", "spkit.b.f"}, "spkit.b": {"spkit.c"}, "spkit.c": {"spkit.a"},
             "spkit.d": {"spkit.a"}, "spkit.e": {"spkit.e.g"}, "spkit.p": {"spkit.p.x"},
             "spkit.p.x": {"spkit.p", "spkit.p.Name"}, "spkit.p.y": {"spkit.p", "spkit.p.x"}}
    resolved = module_graph(graph)
    assert resolved["spkit.a"] == {"spkit.b"} and resolved["spkit.e"] == set()  # a name, and itself
    assert resolved["spkit.p.y"] == {"spkit.p.x"}  # `from spkit.p import x`: the submodule only
    assert import_circles(resolved) == [["spkit.a", "spkit.b", "spkit.c"], ["spkit.p", "spkit.p.x"]]
    resolved["spkit.c"] = set()
    assert import_circles(resolved) == [["spkit.p", "spkit.p.x"]]


def test_the_import_parser_sees_function_level_imports():
    graph = imports()
    assert "spkit.recipes.prompting" in graph["spkit.recipes.analysis_prompts"]
    assert "spkit.units.kmeans" in graph["spkit.units.cli"]  # imported inside a subcommand


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


def test_imports_sit_at_the_top_of_their_module():
    """A function-level import is allowed only for a heavy optional package, in a command-line module, or
    with a ``# lazy: <reason>`` comment; every other dependency is imported at the top of its module
    (docs/ARCHITECTURE.md)."""
    lazy = [f"{path.relative_to(PACKAGE.parent)}:{line}: {text}"
            for path in sorted(PACKAGE.rglob("*.py")) if not is_cli_module(path)
            for line, text in disallowed_lazy_imports(path.read_text(encoding="utf-8"))]
    assert lazy == []


def test_the_lazy_import_rule_can_fail():
    source = """
import numpy as np

def f():
    import torch
    from spkit.units.kmeans import KMeansModel
    import plotly.graph_objects as go
    from fairseq import options
    from spkit.recipes import spkit_base  # lazy: spkit_base imports this module
    from spkit.io import write_json  # lazy:
    return np

class C:
    def m(self):
        from tqdm import tqdm
        return tqdm
"""
    assert [line for line, _ in function_level_imports(source)] == [5, 6, 7, 8, 9, 10, 15]
    assert [line for line, _ in disallowed_lazy_imports(source)] == [5, 6, 10, 15]  # a reason is required
    assert is_cli_module(PACKAGE / "units" / "cli.py") and is_cli_module(PACKAGE / "recipes" / "base_cli.py")
    assert not is_cli_module(PACKAGE / "pipeline.py") and not is_cli_module(PACKAGE / "units" / "kmeans.py")

"""The main job, ``spkit run``: synthesize the embedded corpora, then execute the notebook sequence
``notebooks/NN_*.ipynb`` in order with papermill into a run folder.

Each stage leaves a marker ``RUN/.stages/<stage>.json`` holding the parameters it ran with; a rerun
with the same parameters skips completed stages (resume), and a stage whose parameters changed runs
again, as do all stages after it. A failing notebook stops the run with a non-zero exit and leaves
the executed notebook, traceback included, in ``RUN/notebooks/``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spkit.artifacts import TASK_CORPUS
from spkit.errors import UserError
from spkit.io import read_json, sweep_temporaries, write_json
from spkit.layout import REPO_ROOT, corpus_dir, default_data_root, pretrain_corpus_dir
from spkit.presets import (
    PRETRAIN_CORPUS,
    PRETRAIN_CORPUS_SEED,
    RUN_PRESETS,
    corpus_preset,
    uses_oracle_units,
)
from spkit.prompt.results import load_results
from spkit.prompt.verdict import cli_lines
from spkit.report import finalize_run
from spkit.synth import synthesize_corpus
from spkit.ulm.dictionary import UnitDictionary, check_unit_vocabulary
from spkit.units.kmeans import KMeansModel

PRESETS = RUN_PRESETS
CORPUS_KINDS = ("kws", "intent", "lid", "asr", "sf")
KWS_TEST = "kws_test"  # --corpus kws_test=DIR: SUPERB's KS test folder, the test split of kws
PRETRAIN = PRETRAIN_CORPUS  # the pretraining corpus (spkit synth pretrain), read with oracle units
SMOKE_CELL_TIMEOUT_S = 900
SHIPPED_MODEL_PRESETS = ("default", "oracle")
"""Presets whose units and uLM are not trained on the task corpora: they synthesize only the corpora of the
tasks they prompt (:func:`corpus_kinds`)."""


def corpus_kinds(preset: str, tasks: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The task corpora a run of ``preset`` synthesizes: all of them where the run trains its units and uLM on
    them (``smoke``, ``scratch``) or prompts every task (``full``); the prompted tasks' corpora where the
    models are shipped and the main job leaves tasks out (``default`` and ``oracle``: no ASR). ``tasks``: the
    run's tasks where they are not the preset's (``--param tasks=...``)."""
    if preset not in SHIPPED_MODEL_PRESETS:
        return CORPUS_KINDS
    used = {TASK_CORPUS[t] for t in (tasks if tasks is not None else preset_tasks(preset))}
    return tuple(k for k in CORPUS_KINDS if k in used)


def preset_tasks(preset: str) -> tuple[str, ...]:
    """The tasks notebook 03 prompts at ``preset`` when no ``tasks`` parameter is given."""
    from spkit.recipes.prompting import PRESETS  # lazy: pulls torch, and `spkit --help` imports this module
    return tuple(PRESETS[preset].tasks)


CLASSIFICATION_TASKS = ("kws", "intent", "lid")
NOTEBOOK_TASKS = {"04_verbalizer_analysis": CLASSIFICATION_TASKS,
                  "05_attention_visualization": (*CLASSIFICATION_TASKS, "sf")}
"""The tasks a notebook with a single ``task`` parameter can show (04 compares label classes; 05 also draws
SF's generated slots); any other notebook declaring ``task`` takes every task."""


def explicit_tasks(params: dict[str, Any] | None) -> tuple[str, ...] | None:
    """The ``tasks`` notebook parameter as a tuple of task names (``--param tasks=kws,intent`` or
    ``--param "tasks=['kws']"``); None when it is not given. Unknown names are a :class:`RunRequestError`."""
    value = (params or {}).get("tasks")
    if value is None:
        return None
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(t, str) for t in value):
        raise RunRequestError(f"--param tasks={value!r}: give task names, e.g. --param tasks=kws,intent")
    unknown = [t for t in value if t not in TASK_CORPUS]
    if unknown:
        raise RunRequestError(f"--param tasks: unknown task(s) {', '.join(unknown)}; choose from "
                              f"{', '.join(TASK_CORPUS)}")
    return tuple(dict.fromkeys(value))


def run_tasks(preset: str, corpora: dict[str, str], params: dict[str, Any] | None = None
              ) -> tuple[tuple[str, ...], dict[str, str]]:
    """``(tasks, skipped)``: the tasks a run prompts and, for each preset task left out, why.

    The tasks are ``--param tasks`` when given (every one must have its corpus, else a
    :class:`RunRequestError` before anything runs), else the preset's tasks whose corpus the run has
    (``corpora``: given with ``--corpus`` or synthesized); the others are skipped, and no task at all is an
    error. ``--param task=...`` (notebooks 04-06) must name a task of the run too."""
    explicit = explicit_tasks(params)
    wanted = explicit if explicit is not None else preset_tasks(preset)
    missing = [t for t in wanted if TASK_CORPUS[t] not in corpora]
    hint = " ".join(f"--corpus {TASK_CORPUS[t]}=DIR" for t in missing)
    if explicit is not None and missing:
        raise RunRequestError(f"--param tasks asks for {', '.join(missing)} but the run has no "
                              f"{', '.join(TASK_CORPUS[t] for t in missing)} corpus: give {hint}, or leave "
                              "the task out")
    tasks = tuple(t for t in wanted if t not in missing)
    if not tasks:
        raise RunRequestError(f"none of the {preset} preset's tasks ({', '.join(wanted)}) has a corpus in "
                              f"this run: give at least one of {hint}")
    task = (params or {}).get("task")
    if task is not None and task not in tasks:
        raise RunRequestError(f"--param task={task}: not a task of this run (it runs {', '.join(tasks)}"
                              + (f"; give --corpus {TASK_CORPUS[task]}=DIR)" if task in TASK_CORPUS else ")"))
    return tasks, {t: f"no {TASK_CORPUS[t]} corpus" for t in missing}


def notebooks_dir() -> Path:
    """The folder of the notebook sequence (``SPKIT_NOTEBOOKS`` overrides, e.g. for tests)."""
    return Path(os.environ.get("SPKIT_NOTEBOOKS", REPO_ROOT / "notebooks"))


@dataclass
class Stage:
    """One step of the main job: a name, the parameters that identify its result, and a runner."""

    name: str
    params: dict[str, Any]
    run: Callable[[], None]

    @property
    def key(self) -> str:
        blob = json.dumps({"name": self.name, "params": self.params}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class StageFailed(RuntimeError):
    """A stage of the main job failed; the message says which and where its output is."""


class RunRequestError(UserError, ValueError):
    """What ``spkit run`` refuses before anything runs: unknown preset, missing corpus, unknown parameter."""


# Parameters the pipeline sets itself in every notebook (from --preset, --out, --seed, --corpus).
RUN_PARAMETERS = ("preset", "run_dir", "seed", "corpora")


def notebook_parameters(nb: Path) -> list[str]:
    """The names a notebook's ``parameters`` cell assigns (the ones papermill can override), in order."""
    return list(notebook_defaults(nb))


def notebook_defaults(nb: Path) -> dict[str, Any]:
    """``{name: default}`` of a notebook's ``parameters`` cell, in order (a default that is not a Python
    literal reads as None)."""
    try:
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError) as e:
        raise RunRequestError(f"{nb}: not a readable notebook ({e})") from None
    defaults: dict[str, Any] = {}
    for cell in cells:
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for node in ast.parse(src).body:
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else [])
            for t in targets:
                if isinstance(t, ast.Name) and t.id not in defaults:
                    try:
                        defaults[t.id] = ast.literal_eval(node.value) if node.value is not None else None
                    except ValueError:
                        defaults[t.id] = None
    return defaults


def check_parameters(params: dict[str, Any], notebooks: list[Path]) -> None:
    """Refuse a parameter that no notebook of the run declares (a typo would otherwise be ignored)."""
    declared = sorted({n for nb in notebooks for n in notebook_parameters(nb)} - set(RUN_PARAMETERS))
    reserved = sorted(set(params) & set(RUN_PARAMETERS))
    if reserved:
        raise RunRequestError(f"--param {', '.join(reserved)}: set by spkit run itself; use --preset, --out, "
                              "--seed or --corpus instead")
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise RunRequestError(f"unknown notebook parameter(s) {', '.join(unknown)}: no notebook of the run "
                              f"declares them; the notebooks' parameters are: {', '.join(declared)}")


def synth_stage(kind: str, out: Path, preset: str, seed: int) -> Stage:
    def run() -> None:
        synthesize_corpus(kind, out, preset=preset, seed=seed)

    return Stage(f"synth_{kind}", {"kind": kind, "out": str(out), "preset": preset, "seed": seed}, run)


def notebook_stage(nb: Path, run_dir: Path, params: dict[str, Any], timeout_s: int | None) -> Stage:
    def run() -> None:
        import papermill as pm

        out_nb = run_dir / "notebooks" / nb.name
        out_nb.parent.mkdir(parents=True, exist_ok=True)
        try:
            pm.execute_notebook(str(nb), str(out_nb), parameters=params, kernel_name="python3",
                                cwd=str(run_dir), progress_bar=False, execution_timeout=timeout_s,
                                log_output=False)
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
            raise StageFailed(f"notebook {nb.name} failed; the executed notebook with the traceback "
                              f"is {out_nb}\n{type(e).__name__}: {e}") from e

    return Stage(nb.stem, {"notebook": nb.name, "sha": _file_sha(nb), **params}, run)


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def plan(preset: str, run_dir: Path, *, seed: int = 0, data_root: Path | None = None,
         kinds: tuple[str, ...] | None = None, timeout_s: int | None = None,
         corpora: dict[str, str] | None = None, params: dict[str, Any] | None = None,
         log: Callable[[str], None] | None = None) -> list[Stage]:
    """The stages of the main job for ``preset``, in order.

    ``corpora`` (``{name: folder}``, names among :data:`CORPUS_KINDS` plus ``kws_test``, SUPERB's KS test
    folder beside ``kws``) replaces the synthesized corpora (the ``paper`` preset needs it);
    ``params`` are extra notebook parameters passed to every notebook (e.g. ``checkpoint``,
    ``kmeans_path``, ``gslm_checkpoint``; a notebook ignores the ones it does not use). ``kinds``: the task
    corpora to synthesize (None: :func:`corpus_kinds` of the preset).

    With oracle units (preset ``oracle``, or ``params={"units": "oracle"}`` at any synthesized size) the
    pretraining corpus (``spkit synth pretrain`` at the preset's size, the seed spkit-base used) is
    synthesized too and passed as ``corpora["pretrain"]`` (``--corpus pretrain=DIR`` gives another one).

    The run prompts the tasks of :func:`run_tasks`: with corpora given, the preset's tasks whose corpus is
    among them (``log`` gets one line naming the skipped ones and why); notebook 03 gets them as its
    ``tasks`` parameter and notebooks 04-05 a ``task`` of the run (a notebook with no task of the run to
    show is left out, with a line to ``log``). Every check happens here, before anything runs.
    """
    log = log or (lambda _: None)
    if preset not in PRESETS:
        raise RunRequestError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    try:
        oracle = uses_oracle_units(preset, (params or {}).get("units"))
    except ValueError as e:
        raise RunRequestError(f"--param units: {e}") from None
    if oracle and preset == "paper":
        raise RunRequestError("units=oracle needs the synthesizer's phone alignments; the paper preset reads "
                              "real data sets, which have none (use --preset oracle, or smoke with "
                              "units=oracle)")
    explicit = explicit_tasks(params)
    data_root = (data_root or default_data_root()).resolve()
    run_dir = run_dir.resolve()
    stages: list[Stage] = []
    if corpora:
        unknown = sorted(set(corpora) - {*CORPUS_KINDS, KWS_TEST, PRETRAIN})
        if unknown:
            raise RunRequestError(f"--corpus {', '.join(unknown)}: unknown corpus name; use "
                                  f"{', '.join([*CORPUS_KINDS, KWS_TEST, PRETRAIN])}")
        if PRETRAIN in corpora and not oracle:
            raise RunRequestError(f"--corpus {PRETRAIN}=...: the pretraining corpus is read only with oracle "
                                  "units (--preset oracle, or --param units=oracle)")
        if KWS_TEST in corpora and "kws" not in corpora:
            raise RunRequestError(f"--corpus {KWS_TEST}=... is SUPERB's KS test folder; give the training "
                                  "corpus too: --corpus kws=speech_commands_v0.01")
        missing = [f"{k}={v}" for k, v in corpora.items() if not Path(v).exists()]
        if missing:
            raise RunRequestError(f"corpus folders do not exist: {', '.join(missing)}")
        corpora = {k: str(Path(v).resolve()) for k, v in corpora.items()}
    elif preset == "paper":
        raise RunRequestError("the paper preset reads the real data sets: give them with --corpus, e.g. "
                              "--corpus kws=speech_commands_v0.01 "
                              "--corpus kws_test=speech_commands_test_set_v0.01 "
                              "--corpus intent=fluent_speech_commands_dataset")
    else:
        corpora = {}
        size = corpus_preset(preset)
        for kind in kinds or corpus_kinds(preset, explicit):
            out = corpus_dir(data_root, kind, size, seed)
            corpora[kind] = str(out)
            stages.append(synth_stage(kind, out, size, seed))
    if oracle and PRETRAIN not in corpora:
        size = corpus_preset(preset)
        out = pretrain_corpus_dir(data_root, size, PRETRAIN_CORPUS_SEED)
        corpora[PRETRAIN] = str(out)
        stages.append(synth_stage(PRETRAIN, out, size, PRETRAIN_CORPUS_SEED))
    if timeout_s is None and preset == "smoke":
        timeout_s = SMOKE_CELL_TIMEOUT_S  # a hung kernel (e.g. jupyter/nbclient#312) must fail, not block
    notebooks = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if params:
        check_parameters(params, notebooks)
    tasks, skipped = run_tasks(preset, corpora, params)
    if skipped:
        log(f"[spkit run] tasks: {', '.join(tasks)}; skipped: "
            + ", ".join(f"{t} ({why})" for t, why in skipped.items())
            + f" (give {' '.join(f'--corpus {TASK_CORPUS[t]}=DIR' for t in skipped)} to run them)")
    nb_params = {"preset": preset, "run_dir": str(run_dir), "seed": seed, "corpora": corpora,
                 **(params or {})}
    if explicit is not None:
        nb_params["tasks"] = list(explicit)
    for nb in notebooks:
        extra = _task_parameters(nb, tasks, narrowed=bool(skipped), given=params or {})
        if extra is None:
            log(f"[spkit run] {nb.stem}: left out (none of this run's tasks, {', '.join(tasks)}, is one it "
                f"shows: {', '.join(NOTEBOOK_TASKS[nb.stem])})")
            continue
        stages.append(notebook_stage(nb, run_dir, {**nb_params, **extra}, timeout_s))
    return stages


def _task_parameters(nb: Path, tasks: tuple[str, ...], narrowed: bool, given: dict[str, Any]
                     ) -> dict[str, Any] | None:
    """The task parameters that make notebook ``nb`` follow the run's ``tasks``: ``tasks`` where the
    preset's list was narrowed to the corpora given, ``task`` where its default task is not run (the run's
    first one the notebook can show). None: the notebook shows none of the run's tasks. Nothing is added
    where the notebook already follows (the stage's parameters, so its resume key, stay as they were)."""
    try:
        defaults = notebook_defaults(nb)
    except RunRequestError:
        return {}  # not a notebook with cells: papermill says so when the stage runs
    extra: dict[str, Any] = {}
    if narrowed and "tasks" in defaults and "tasks" not in given:
        extra["tasks"] = list(tasks)
    default = defaults.get("task")
    if "task" in defaults and "task" not in given and default is not None and default not in tasks:
        shown = [t for t in tasks if t in NOTEBOOK_TASKS.get(nb.stem, tuple(TASK_CORPUS))]
        if not shown:
            return None
        extra["task"] = shown[0]
    return extra


def execute(stages: list[Stage], run_dir: Path, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``stages`` in order, skipping those already complete with the same parameters (a killed run's
    temporaries in ``run_dir`` are removed first: :func:`spkit.io.sweep_temporaries`).

    Returns a summary ``{stage: {"status": "done"|"skipped", "seconds": float}}``; raises
    :class:`StageFailed` at the first failure (later stages do not run).
    """
    marks = run_dir / ".stages"
    marks.mkdir(parents=True, exist_ok=True)
    for tmp in sweep_temporaries(run_dir):  # a killed run's half-written files, never renamed into place
        log(f"[spkit run] removed {tmp.relative_to(run_dir)}, left by an interrupted write")
    summary: dict[str, Any] = {}
    invalidated = False  # once a stage reruns, every later stage reruns too
    for stage in stages:
        mark = marks / f"{stage.name}.json"
        if not invalidated and mark.exists() and read_json(mark).get("key") == stage.key:
            log(f"[spkit run] {stage.name}: already complete, skipped")
            summary[stage.name] = {"status": "skipped", "seconds": 0.0}
            continue
        invalidated = True
        mark.unlink(missing_ok=True)
        log(f"[spkit run] {stage.name}: running")
        t0 = time.perf_counter()
        stage.run()
        dt = time.perf_counter() - t0
        write_json(mark, {"key": stage.key, "params": stage.params, "seconds": round(dt, 2)})
        summary[stage.name] = {"status": "done", "seconds": round(dt, 2)}
        log(f"[spkit run] {stage.name}: done in {dt:.1f} s")
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=PRESETS, default="default",
                   help="smoke: seconds, for tests; default: the main job on the shipped spkit-base; "
                        "scratch: the main job training its units and uLM from zero; full: default's models, "
                        "every clip, every method to convergence (hours on a CPU); paper: real data (GPU); "
                        "oracle: the oracle topline (units = the synthesizer's phone labels, not a speech "
                        "system; --param units=oracle gives it at another size)")
    p.add_argument("--out", type=Path, required=True, help="run folder (created; resumed if present)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthesized corpora")
    p.add_argument("--data-root", type=Path, default=None,
                   help=f"where corpora are synthesized (default {default_data_root()})")
    p.add_argument("--corpus", action="append", default=[], metavar="NAME=FOLDER",
                   help="use a real corpus instead of synthesizing (kws, intent, lid, asr, sf; kws_test: "
                        "SUPERB's KS test folder speech_commands_test_set_v0.01; pretrain: the pretraining "
                        "corpus of units=oracle); repeatable")
    p.add_argument("--hubert", default=None, help="real HuBERT checkpoint (e.g. hubert_base_ls960.pt)")
    p.add_argument("--layer", type=int, default=None, help="HuBERT layer (GSLM: 6)")
    p.add_argument("--kmeans", default=None, help="GSLM k-means model (km.bin) to use instead of fitting")
    p.add_argument("--ulm", default=None, help="GSLM uLM folder (checkpoint_best.pt + dict.txt)")
    p.add_argument("--base", default=None, metavar="DIR",
                   help="an spkit-base folder to build on instead of the preset's (default preset: "
                        "models/spkit-base; see spkit pretrain-base)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="extra notebook parameter (VALUE parsed as a Python literal, else a string)")
    p.add_argument("--timeout", type=int, default=None,
                   help=f"per-cell timeout in seconds (default: none; {SMOKE_CELL_TIMEOUT_S} at smoke)")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RunRequestError(f"{what} must look like NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def notebook_params(args: argparse.Namespace) -> dict[str, Any]:
    """Notebook parameters from the command line (real checkpoints and --param overrides)."""
    params: dict[str, Any] = {}
    for option, path in (("--hubert", args.hubert), ("--kmeans", args.kmeans), ("--ulm", args.ulm)):
        if path and not Path(path).exists():
            raise RunRequestError(f"{option} {path}: no such file or folder")
    if args.hubert:
        params.update(features="hubert", checkpoint=str(Path(args.hubert).resolve()))
    if args.layer is not None:
        params["layer"] = args.layer
    if args.kmeans:
        params["kmeans_path"] = str(Path(args.kmeans).resolve())
    if args.ulm:
        params["gslm_checkpoint"] = str(Path(args.ulm).resolve())
    if args.base:
        params["base"] = str(Path(args.base).resolve())
    if args.kmeans and args.ulm:
        check_quantizer_matches_ulm(Path(args.kmeans), Path(args.ulm))
    for key, value in _pairs(args.param, "--param").items():
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def check_quantizer_matches_ulm(kmeans: Path, ulm: Path) -> None:
    """Refuse a k-means model whose K differs from the number of units in the uLM's ``dict.txt``."""
    dict_path = ulm / "dict.txt" if ulm.is_dir() else ulm.parent / "dict.txt"
    check_unit_vocabulary(KMeansModel.load(kmeans).n_clusters, kmeans, UnitDictionary.load(dict_path),
                          dict_path)


def main(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    stages = plan(args.preset, args.out, seed=args.seed, data_root=args.data_root, timeout_s=args.timeout,
                  corpora=_pairs(args.corpus, "--corpus"), params=notebook_params(args), log=print)
    check_run_files(args.out)

    try:
        summary = execute(stages, args.out.resolve())
    except StageFailed as e:
        print(f"[spkit run] FAILED: {e}", file=sys.stderr)
        return 1
    total = time.perf_counter() - t0
    index = finalize_run(args.out, {"preset": args.preset, "seed": args.seed, "stages": summary,
                                    "seconds": round(total, 1)})
    print(f"[spkit run] complete in {total:.1f} s -> {args.out} (report: {index})")
    _print_corpora_summary(stages)
    _print_verdict(args.out)
    return 0


def _print_verdict(run_dir: Path) -> None:
    """The last lines: what the run shows and its warnings (:func:`spkit.prompt.verdict.cli_lines`)."""
    path = Path(run_dir) / "results.json"
    if path.exists():
        for line in cli_lines(load_results(path)):
            print(line)


def check_run_files(run_dir: Path) -> None:
    """Refuse to resume a run folder whose ``results.json`` or a ``prompt.pt`` is damaged (one line naming
    the file, before anything runs) rather than fail inside a notebook minutes later. spkit writes both
    atomically, so a killed run never leaves them half-written; this catches damage from elsewhere."""
    run_dir = Path(run_dir)
    results = run_dir / "results.json"
    prompts = run_dir / "prompts"
    if not results.exists() and not prompts.is_dir():
        return
    from spkit.prompt.checkpoint import read_prompt_file  # lazy: torch

    if results.exists():
        load_results(results)
    for prompt in sorted(prompts.glob("*/*/seed*/prompt.pt")):
        read_prompt_file(prompt)


def _print_corpora_summary(stages: list[Stage]) -> None:
    for stage in stages:
        if not stage.name.startswith("synth_"):
            continue
        info = Path(stage.params["out"]) / "spkit" / "corpus.json"
        if info.exists():
            splits = read_json(info).get("splits", {})
            counts = ", ".join(f"{s} {v.get('clips')} clips/{v.get('speakers')} speakers"
                               for s, v in splits.items())
            print(f"  {stage.params['kind']:<7} {counts}  ({stage.params['out']})")

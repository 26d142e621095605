"""The prompts the analyses of notebooks 04-05 need, trained where a run lacks them.

Analyses (:mod:`spkit.analysis`) only read prompt files; training belongs to the recipes, so the notebooks
call these first: :func:`ensure_prompts` trains missing ``RUN/prompts/<task>/<method>/seed<N>/prompt.pt``
with notebook 03's recipe (:mod:`spkit.recipes.prompting`) and the preset's budget.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spkit.analysis.verbalizer import VERBALIZERS, AnalysisError, verbalizer_methods
from spkit.artifacts import prompt_files
from spkit.layout import RunLayout
from spkit.prompt.tasks import TASKS
from spkit.recipes.prompting import RunSpec, preset_config, run_experiments


def ensure_prompts(run_dir: str | os.PathLike, preset: str, task: str,
                   methods: Mapping[str, Mapping[str, Any]], seeds: Sequence[int],
                   progress: bool = True, **overrides: Any) -> dict[str, dict[int, Path]]:
    """Make sure ``RUN/prompts/<task>/<method>/seed<N>/prompt.pt`` exists for every method and seed,
    training the missing ones with notebook 03's recipe and the preset's budget (smoke: seconds).

    Args:
        methods: ``{method name: RunSpec fields}``, e.g. ``{"deep_prompt_verb-random": {"verbalizer":
            "random"}}``; the prompt length defaults to the preset's.
        seeds: the seeds wanted.
        overrides: :class:`spkit.recipes.prompting.PromptingConfig` fields to change.
    Returns:
        ``{method: {seed: path}}`` (every seed the run has afterwards, not only ``seeds``).
    """
    config = preset_config(preset, **overrides)
    missing = []
    for method, fields in methods.items():
        have = {f.seed for f in prompt_files(run_dir, task, method)}
        for seed in seeds:
            if seed not in have:
                spec = {"length": config.prompt_length, "verbalizer": config.verbalizer, **fields}
                missing.append(RunSpec(task, method, int(seed), **spec))
    if missing:
        run_experiments(run_dir, config, progress=progress, only=missing)
    out = {m: {f.seed: f.path for f in prompt_files(run_dir, task, m)} for m in methods}
    for method in methods:
        lost = [s for s in seeds if s not in out[method]]
        if lost:
            raise AnalysisError(f"{RunLayout.at(run_dir).root / 'prompts' / task / method}: no prompt.pt for "
                                f"seeds {lost} after training")
    return out


def ensure_verbalizer_prompts(run_dir: str | os.PathLike, preset: str, task: str = "kws",
                              kinds: Sequence[str] = VERBALIZERS, seeds: Sequence[int] | None = None,
                              progress: bool = True) -> dict[str, dict[int, Path]]:
    """``{verbalizer kind: {seed: prompt.pt}}``, training the missing verbalizers' deep prompts.

    The preset's verbalizer (of ``task``) is notebook 03's ``deep_prompt``; the others are its
    ``deep_prompt_verb-<kind>`` ablations (:func:`~spkit.analysis.verbalizer.verbalizer_methods`).
    ``seeds``: default the preset's ``analysis_seeds`` (the main job's: seed 0), else the seeds the main
    prompt (``deep_prompt``) already has, else ``(0,)``; every verbalizer is then compared on the same seeds.
    """
    config = preset_config(preset)
    methods = verbalizer_methods(config.for_task(task).verbalizer)
    unknown = [k for k in kinds if k not in methods]
    if unknown:
        raise AnalysisError(f"unknown verbalizers {unknown}; expected some of {list(methods)}")
    if seeds is None:
        seeds = list(config.analysis_seeds or ()) or [
            f.seed for f in prompt_files(run_dir, task, "deep_prompt")] or [0]
    got = ensure_prompts(run_dir, preset, task, {methods[k]: {"verbalizer": k} for k in kinds},
                         seeds, progress=progress)
    return {k: {s: p for s, p in got[methods[k]].items() if s in set(seeds)} for k in kinds}


def require_classification(task: str) -> None:
    """Refuse a sequence task (``asr``, ``sf``) for the verbalizer analysis, which compares label classes:
    an :class:`AnalysisError` that says where those tasks are shown instead."""
    if task not in TASKS:
        raise AnalysisError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task in ("asr", "sf"):
        raise AnalysisError(f"task {task!r} generates sequences (no label classes to compare verbalizers on);"
                            " "
                            "notebook 03 shows its metrics and predictions, 05 its attention, 06 its demo; "
                            "choose kws, intent or lid here")

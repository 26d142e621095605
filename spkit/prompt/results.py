"""The results table of a run: ``results.json`` (machine-readable) and ``results.md`` (the paper's table).

Every training run (one task, one method, one seed) produces a :class:`RunResult`; :func:`update_results`
merges runs into ``RUN/results.json`` (read-modify-write under a lock file, written atomically), so
notebooks for different tasks or methods may add their rows in any order, even at the same time, and a
rerun of the same ``(task, method, seed)`` replaces its earlier value. The layout of ``results.json``::

    {"format": "spkit.results", "version": 1,
     "std": "sample standard deviation over seeds (ddof=1); null with a single seed",
     "tasks": {
       "kws": {"metric": "accuracy", "lower_is_better": false,
               "methods": {
                 "deep_prompt": {"mean": 0.71, "std": 0.012, "n_seeds": 3,
                                 "seeds": [0.70, 0.72, 0.71],        # per-seed values, in seed order
                                 "seed_ids": [0, 1, 2],
                                 "trainable_params": 123456,
                                 "peak_mem_mb": 812.0,                # mean over seeds
                                 "train_s": 301.5,                    # mean over seeds
                                 "decoder": "greedy_exact",           # what mean/std/seeds score
                                 "constrained": {"mean": 0.74, "std": 0.01, "seeds": [...]},
                                 "settings": {"kind": "prompt", "prompt_form": "deep_prompt",
                                              "prompt_length": 20, "lr": 0.05, "max_epochs": 20,
                                              "patience": 3, "stop_on": "valid_metric",
                                              "decoder": "greedy_exact", "valid_decoder": "greedy_exact",
                                              "epochs_run": [9, 12, 7],           # per seed, seed order
                                              "stop_reason": ["patience", ...],   # per seed
                                              ...},
                                 "runs": [{"seed": 0, "value": 0.70, "trainable_params": ...,
                                           "peak_mem_mb": ..., "train_s": ..., "extra": {...}}, ...]}}}},
     "few_shot": {"kws": {"deep_prompt": {"1": {"mean": ..., "std": ..., "n_seeds": 3, "seeds": [...],
                                                "seed_ids": [...], "settings": {...}, "runs": [...]},
                                          "5": {...}, ...,
                                          "all": {"mean": ..., "std": ..., "n_seeds": 3, "seeds": [...],
                                                  "seed_ids": [...],
                                                  "from": "tasks.kws.methods.deep_prompt"}}}}}

A top-level ``units`` (written by the prompting recipe from ``RUN/units/unit_model.json``) says what the
units are: ``{"kind": "ssl_kmeans", "features", "layer", "n_units", ...}`` for a speech run, ``{"kind":
"oracle_phones", "label": "oracle topline (synthesizer phone labels, not a speech system)", ...}`` for the
oracle topline, whose ``results.md`` opens with that label.

A top-level ``class_rates`` (added by the prompting recipe; an older record lacks it and the run report fills
it in from the run's unit files) holds each classification task's chance rate (1 / classes of the training
label set) and the test split's majority-class share, which the report's headline figure draws and its
warnings compare results with (:mod:`spkit.prompt.verdict` documents the fields)::

    "class_rates": {"kws": {"n_classes": 12, "chance": 0.0833, "test_n": 780, "majority": 0.191,
                            "majority_label": "_unknown_", "test_counts": {...}, "from": "..."}}

``results.md`` opens with what the run shows (:func:`spkit.prompt.verdict.summary_markdown`: the headline
figure where the run report made one, the verdict sentences and the warnings), then the tables.

``settings`` (per method) holds the settings every seed shares (``runs[].extra.settings`` of each run:
prompt form, length, learning rate, epoch cap, patience, stopping criterion, verbalizer, ...), the test's
``decoder`` and the validation's ``valid_decoder``, and per seed the epochs run and the stop reason
(``patience``: no better validation score for ``patience`` epochs; ``max_epochs``: the cap was reached).
``runs[].extra.valid`` is the best validation score (what ``spkit predict`` picks its default seed by).

``few_shot.<task>.<method>.<n>``: the method trained on ``n`` examples per class (drawn per seed from the
training split), mean and std over seeds; ``all`` repeats the main table's entry of the method.

Classification prompt and fine-tuning runs are scored by two decoders (:mod:`spkit.prompt.decode`):
``mean``/``std``/``seeds`` by SpeechPrompt's (``decoder: "greedy_exact"``: greedy until ``</s>``, a hit only
when the whole output equals the label), ``constrained`` by label scoring (the most probable label's token
sequence), the same statistics over the same seeds. Runs without decoders (the downstream head) have
neither field. ``peak_mem_mb`` is each run's own peak (:class:`spkit.prompt.train.PeakMemory`: on a GPU
the allocator's peak after a reset; on the CPU the peak bytes of the tensors the run allocated), so it does
not depend on which runs came before in the same process. ``trainable_params`` counts as SpeechPrompt
counts (``deep_prompt``: its dead input prompt included); ``runs[].extra.live_params`` counts the
parameters that receive gradient.

Metric values are fractions in [0, 1]; a metric where lower is better says so in its name
(``"wer (lower is better)"``) and in ``lower_is_better``. ``results.md`` shows one combined table in the
shape of the paper's (``Method | Params | KWS | IC | LID | ASR``, ``mean ± std`` in percent) followed by
one detailed table per task (params, per-seed values, peak memory, training time).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spkit.errors import UserError
from spkit.features.tiny_hubert import TARGET_SENTENCES
from spkit.io import read_json, write_json, write_text
from spkit.prompt.names import METHOD_ORDER, TASK_COLUMNS, format_params
from spkit.prompt.verdict import summary_markdown

# METHOD_ORDER, TASK_COLUMNS and format_params are used here and importable from here (their former home).

FORMAT = "spkit.results"
VERSION = 1
STD_NOTE = "sample standard deviation over seeds (ddof=1); null with a single seed"

LOWER_IS_BETTER_MARK = "(lower is better)"
ORACLE_UNITS = "oracle_phones"  # results.json ``units.kind`` of the oracle topline (spkit.units.oracle)


class ResultsError(UserError, ValueError):
    """A results file or run record that cannot be merged; the message names the file and the problem."""


@dataclass
class RunResult:
    """One training run's outcome: the row a trainer (prompt, downstream, fine-tuning) reports.

    Attributes:
        task: task name (``kws``, ``intent``, ``lid``, ``asr`` or any other).
        method: ``input_prompt``, ``deep_prompt``, ``downstream``, ``finetune``, or a named variant.
        seed: the training seed.
        value: the test metric as a fraction in [0, 1].
        metric: the metric's name; end it with ``(lower is better)`` when lower is better (WER).
        trainable_params: parameters updated by the optimizer.
        peak_mem_mb: peak memory of the run in MiB (GPU allocated, or process RSS on the CPU).
        train_s: training wall-clock seconds.
        extra: anything else worth keeping per run (e.g. CER beside WER, best epoch, settings).
        shots: few-shot runs: training examples per class (merged under ``few_shot``); None: a main run.
    """

    task: str
    method: str
    seed: int
    value: float
    metric: str
    trainable_params: int
    peak_mem_mb: float
    train_s: float
    extra: dict[str, Any] = field(default_factory=dict)
    shots: int | None = None

    def __post_init__(self) -> None:
        where = f"run {self.task}/{self.method}/seed{self.seed}"
        if self.shots is not None and (isinstance(self.shots, bool) or int(self.shots) < 1):
            raise ResultsError(f"{where}: shots must be a positive number of examples per class")
        for name in ("task", "method", "metric"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ResultsError(f"{where}: {name} must be a non-empty string")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ResultsError(f"{where}: seed must be an int, got {self.seed!r}")
        v = float(self.value)
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            # WER can exceed 1 (many insertions); every other metric here is a fraction.
            if not (self.lower_is_better and math.isfinite(v) and v >= 0.0):
                raise ResultsError(f"{where}: metric value {self.value!r} is not a fraction in [0, 1]")
        self.value = v
        self.trainable_params = int(self.trainable_params)
        self.peak_mem_mb = float(self.peak_mem_mb)
        self.train_s = float(self.train_s)

    @property
    def lower_is_better(self) -> bool:
        return LOWER_IS_BETTER_MARK in self.metric

    def as_run(self) -> dict[str, Any]:
        """The per-seed entry stored under ``methods.<method>.runs``."""
        return {"seed": self.seed, "value": self.value, "trainable_params": self.trainable_params,
                "peak_mem_mb": self.peak_mem_mb, "train_s": self.train_s, "extra": dict(self.extra)}


def run_result(task: str, method: str, seed: int, value: float, metric: str, report: Any,
               extra: Mapping[str, Any] | None = None) -> RunResult:
    """A :class:`RunResult` from a trainer's report: :class:`spkit.prompt.train.TrainResult` (prompts, full
    fine-tuning) or :class:`spkit.prompt.downstream.DownstreamResult` (downstream), which share the fields
    ``num_trainable``, ``peak_memory_bytes``, ``memory_method`` and ``wall_seconds``.

    ``value`` is the test metric (e.g. ``evaluate(...)["value"]``); ``metric`` its results.json name
    (:func:`metric_name`). The memory method and best epoch go into ``extra``.
    """
    return RunResult(task=task, method=method, seed=seed, value=value, metric=metric,
                     trainable_params=report.num_trainable, peak_mem_mb=report.peak_memory_bytes / 2 ** 20,
                     train_s=report.wall_seconds,
                     extra={"memory_method": report.memory_method, "best_epoch": report.best_epoch,
                            **(extra or {})})


def metric_name(metric: str, lower_is_better: bool) -> str:
    """The metric as results.json names it: ``"cer"``, True -> ``"cer (lower is better)"``."""
    metric = metric.replace(LOWER_IS_BETTER_MARK, "").strip()
    return f"{metric} {LOWER_IS_BETTER_MARK}" if lower_is_better else metric


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and *sample* standard deviation (ddof=1) of ``values``; std is None for a single value."""
    if not values:
        raise ValueError("mean_std: no values")
    vals = [float(v) for v in values]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def empty_results() -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "std": STD_NOTE, "tasks": {}, "few_shot": {}}


PER_SEED_SETTINGS = ("epochs_run", "stop_reason")


def _settings(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings the runs share, the decoders, and the per-seed epochs run and stop reasons."""
    extras = [r.get("extra", {}) for r in runs]
    dicts = [e.get("settings") for e in extras]
    out: dict[str, Any] = {}
    if all(isinstance(d, dict) for d in dicts) and dicts:
        keys = set(dicts[0]).intersection(*dicts[1:])
        out = {k: dicts[0][k] for k in sorted(keys) if all(d[k] == dicts[0][k] for d in dicts)}
        differ = sorted(set().union(*dicts) - set(out))
        if differ:  # a config changed between reruns of some seeds: say so rather than pick one
            out["differ_between_seeds"] = differ
    for name in ("decoder", "valid_decoder"):
        values = {e.get(name) for e in extras}
        if len(values) == 1 and None not in values:
            out[name] = values.pop()
    for name in PER_SEED_SETTINGS:
        if all(name in e for e in extras):
            out[name] = [e[name] for e in extras]
    return out


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A method's summary from its per-seed runs (sorted by seed)."""
    runs = sorted(runs, key=lambda r: r["seed"])
    values = [r["value"] for r in runs]
    mean, std = mean_std(values)
    params = sorted({r["trainable_params"] for r in runs})
    decoders: dict[str, Any] = {}
    decoder_names = {r.get("extra", {}).get("decoder") for r in runs}
    if len(decoder_names) == 1 and None not in decoder_names:
        decoders["decoder"] = decoder_names.pop()
    if all("constrained" in r.get("extra", {}) for r in runs):
        c_values = [float(r["extra"]["constrained"]) for r in runs]
        c_mean, c_std = mean_std(c_values)
        decoders["constrained"] = {"mean": c_mean, "std": c_std, "seeds": c_values}
    if all("slot_value_cer" in r.get("extra", {}) for r in runs):  # SF: SUPERB's second metric, beside F1
        v_values = [float(r["extra"]["slot_value_cer"]) for r in runs]
        v_mean, v_std = mean_std(v_values)
        decoders["slot_value_cer"] = {"mean": v_mean, "std": v_std, "seeds": v_values}
    return {
        "mean": mean, "std": std, "n_seeds": len(runs), "seeds": values,
        "seed_ids": [r["seed"] for r in runs],
        # The same method on the same task trains the same parameters whatever the seed; if not (a
        # config changed between reruns) the largest is reported and all are listed in the runs.
        "trainable_params": params[-1],
        "peak_mem_mb": statistics.fmean(r["peak_mem_mb"] for r in runs),
        "train_s": statistics.fmean(r["train_s"] for r in runs),
        **decoders,
        "settings": _settings(runs),
        "runs": runs,
    }


def _few_shot_all(tasks: Mapping[str, Any], few_shot: dict[str, Any]) -> None:
    """Refresh each few-shot method's ``all`` entry from the main table (the method on every example)."""
    for task, methods in few_shot.items():
        for method, by_n in methods.items():
            main = tasks.get(task, {}).get("methods", {}).get(method)
            by_n.pop("all", None)
            if main:
                by_n["all"] = {k: main[k] for k in ("mean", "std", "n_seeds", "seeds", "seed_ids")}
                by_n["all"]["from"] = f"tasks.{task}.methods.{method}"


def _check(results: Any, source: str) -> dict[str, Any]:
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise ResultsError(f"{source}: not an spkit results file (format {FORMAT!r} expected)")
    if results.get("version") != VERSION:
        raise ResultsError(f"{source}: results version {results.get('version')!r} not supported "
                           f"(need {VERSION})")
    if not isinstance(results.get("tasks"), dict):
        raise ResultsError(f"{source}: 'tasks' must be an object")
    if not isinstance(results.setdefault("few_shot", {}), dict):
        raise ResultsError(f"{source}: 'few_shot' must be an object")
    return results


def merge_runs(results: Mapping[str, Any], runs: Iterable[RunResult], source: str = "<results>"
               ) -> dict[str, Any]:
    """A new results dict: ``results`` with ``runs`` added (same task/method/seed replaces), re-aggregated.

    Raises :class:`ResultsError` when a run's metric differs from the one the task already uses.
    """
    out = _check(dict(results), source)
    tasks = {k: {**v, "methods": dict(v.get("methods", {}))} for k, v in out["tasks"].items()}
    few_shot = {t: {m: dict(by_n) for m, by_n in ms.items()} for t, ms in out.get("few_shot", {}).items()}
    touched: set[tuple[str, str]] = set()
    touched_few: set[tuple[str, str, str]] = set()
    for run in runs:
        if run.shots is not None:
            by_n = few_shot.setdefault(run.task, {}).setdefault(run.method, {})
            n = str(run.shots)
            kept = [r for r in by_n.get(n, {}).get("runs", []) if r["seed"] != run.seed]
            by_n[n] = {"runs": [*kept, run.as_run()], "metric": run.metric}
            touched_few.add((run.task, run.method, n))
            continue
        task = tasks.setdefault(run.task, {"metric": run.metric, "lower_is_better": run.lower_is_better,
                                           "methods": {}})
        if task["metric"] != run.metric:
            raise ResultsError(f"{source}: task {run.task!r} reports metric {task['metric']!r}, but run "
                               f"{run.method}/seed{run.seed} reports {run.metric!r}")
        method = task["methods"].get(run.method, {"runs": []})
        kept = [r for r in method["runs"] if r["seed"] != run.seed]
        task["methods"][run.method] = {**method, "runs": [*kept, run.as_run()]}
        touched.add((run.task, run.method))
    for task_name, method_name in touched:
        m = tasks[task_name]["methods"]
        m[method_name] = _aggregate(m[method_name]["runs"])
    for task_name, method_name, n in touched_few:
        entry = few_shot[task_name][method_name][n]
        agg = _aggregate(entry["runs"])
        few_shot[task_name][method_name][n] = {"metric": entry["metric"], **agg}
    _few_shot_all(tasks, few_shot)
    out["tasks"] = tasks
    out["few_shot"] = few_shot
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path.lock`` for a read-modify-write of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with lock.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``results.json`` (an empty table when the file does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return empty_results()
    return _check(read_json(path), str(path))


def update_results(path: str | os.PathLike, runs: Iterable[RunResult],
                   md_path: str | os.PathLike | None = None, units: Mapping[str, Any] | None = None,
                   class_rates: Mapping[str, Any] | None = None, figure: str | None = None
                   ) -> dict[str, Any]:
    """Merge ``runs`` into the ``results.json`` at ``path`` and rewrite it (and ``results.md``) atomically.

    ``md_path`` defaults to ``results.md`` beside ``path``. ``units``: what the run's units are (results.json
    ``units``, e.g. ``{"kind": "oracle_phones", "label": ...}``, see
    :func:`spkit.units.oracle.unit_model_summary`), set when given. ``class_rates``: per task chance and
    majority rates (:func:`spkit.prompt.verdict.class_rates_from_units`), merged into results.json
    ``class_rates`` when given. ``figure``: the headline figure results.md shows (relative to it). Safe
    against concurrent writers on one machine (a lock file serialises the read-modify-write). Returns the
    merged results.
    """
    path = Path(path)
    md_path = Path(md_path) if md_path is not None else path.with_name("results.md")
    runs = list(runs)
    with _locked(path):
        merged = merge_runs(load_results(path), runs, str(path))
        if units is not None:
            merged["units"] = dict(units)
        if class_rates:
            merged["class_rates"] = {**(merged.get("class_rates") or {}), **class_rates}
        write_json(path, merged)
        write_text(md_path, render_markdown(merged, figure=figure))
    return merged


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------

def _pct(value: float) -> str:
    return f"{100.0 * value:.1f}"


def format_cell(entry: Mapping[str, Any]) -> str:
    """``mean ± std`` in percent (``mean`` alone with one seed)."""
    if entry.get("std") is None:
        return f"{_pct(entry['mean'])} (1 seed)"
    return f"{_pct(entry['mean'])} ± {_pct(entry['std'])}"


def _ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    names = list(names)
    return [n for n in order if n in names] + sorted(n for n in names if n not in order)


def _column_header(task: str, info: Mapping[str, Any]) -> str:
    arrow = "↓" if info.get("lower_is_better") else "↑"
    metric = str(info["metric"]).replace(LOWER_IS_BETTER_MARK, "").strip()
    return f"{TASK_COLUMNS.get(task, task.upper())} {metric} % {arrow}"


def render_markdown(results: Mapping[str, Any], figure: str | None = None, summary: bool = True) -> str:
    """``results.md``: what the run shows (the headline ``figure`` when given, the verdict sentences and the
    warnings: :func:`spkit.prompt.verdict.summary_markdown`; left out with ``summary=False``), the combined
    table (paper's shape) and one detailed table per task."""

    tasks = results["tasks"]
    task_names = _ordered(tasks, tuple(TASK_COLUMNS))
    methods = _ordered({m for t in tasks.values() for m in t["methods"]}, METHOD_ORDER)
    lines = ["# Results", ""]
    units = results.get("units") or {}
    if units.get("kind") == ORACLE_UNITS:
        ssl = units.get("downstream_features") or {}
        ssl_name = ssl.get("source") or ssl.get("checkpoint")
        label = units.get("label") or "oracle topline"
        lines += [f"**{label}**: the units are the synthesizer's phone label per 20 ms frame "
                  "(deduplicated), not the output of a speech model; the uLM is trained on them by the "
                  "same recipe. Compare with a speech run to see how much of the gap is the units and how "
                  "much is prompting. The downstream baseline reads an SSL model's layers, not these units"
                  + (f" ({ssl_name})" if ssl_name else "") + ".", ""]
    if units.get("targets") in TARGET_SENTENCES:
        lines += [f"**Units**: k-means of {TARGET_SENTENCES[units['targets']]}.", ""]
    if summary:
        lines += summary_markdown(results, figure)
    if task_names:
        lines += ["## All methods", ""]
    lines += [f"Test metrics in percent, mean ± {STD_NOTE}. ↑: higher is better, ↓: lower is better. "
              "Params: trainable parameters (a range when they differ between tasks).", ""]
    if not task_names:
        return "\n".join([*lines, "No results yet.", ""])
    lines.append("| Method | Params | " + " | ".join(_column_header(t, tasks[t]) for t in task_names) + " |")
    lines.append("|---|---:|" + "---:|" * len(task_names))
    for m in methods:
        params = sorted({tasks[t]["methods"][m]["trainable_params"] for t in task_names
                         if m in tasks[t]["methods"]})
        p = format_params(params[0]) if len(params) == 1 else \
            f"{format_params(params[0])}–{format_params(params[-1])}"
        cells = [format_cell(tasks[t]["methods"][m]) if m in tasks[t]["methods"] else "–" for t in task_names]
        lines.append(f"| {m} | {p} | " + " | ".join(cells) + " |")
    for t in task_names:
        info = tasks[t]
        lines += ["", f"## {TASK_COLUMNS.get(t, t.upper())} ({t}): {info['metric']}", "",
                  "mean ± std: SpeechPrompt's decoder (greedy until </s>, exact match) where a method "
                  "decodes; constrained: label scoring.", "",
                  "| Method | Params | mean ± std (%) | constrained (%) | per seed (%) | peak mem (MiB) | "
                  "train (s) | lr | epochs run / cap (stop) |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---|"]
        for m in _ordered(info["methods"], METHOD_ORDER):
            e = info["methods"][m]
            per_seed = ", ".join(f"{s}: {_pct(v)}" for s, v in zip(e["seed_ids"], e["seeds"]))
            constrained = format_cell(e["constrained"]) if "constrained" in e else "–"
            lines.append(f"| {m} | {format_params(e['trainable_params'])} | {format_cell(e)} | "
                         f"{constrained} | {per_seed} | {e['peak_mem_mb']:.0f} | {e['train_s']:.1f} | "
                         f"{_settings_cells(e.get('settings') or {})} |")
    lines += _few_shot_markdown(results)
    return "\n".join(lines) + "\n"


def _settings_cells(st: Mapping[str, Any]) -> str:
    """``lr | 9, 12, 7 / 20 (patience, patience, max_epochs)``; dashes where a run did not record it."""
    lr = f"{st['lr']:g}" if isinstance(st.get("lr"), (int, float)) else "–"
    if "epochs_run" not in st:
        return f"{lr} | –"
    cap = st.get("max_epochs", "?")
    return (f"{lr} | {', '.join(str(x) for x in st['epochs_run'])} / {cap} "
            f"({', '.join(str(x) for x in st.get('stop_reason', []))})")


def shots_order(ns: Iterable[str]) -> list[str]:
    """Few-shot sizes as they are read: numbers ascending (10 after 5), ``all`` last."""
    ns = set(ns)
    return sorted((n for n in ns if n != "all"), key=int) + (["all"] if "all" in ns else [])


def _few_shot_markdown(results: Mapping[str, Any]) -> list[str]:
    few = results.get("few_shot") or {}
    if not few:
        return []
    lines = ["", "## Few-shot: test metric by training examples per class", "",
             "mean ± std over seeds (%); `all`: the main table's run on the whole training split."]
    for task in _ordered(few, tuple(TASK_COLUMNS)):
        methods = few[task]
        ns = shots_order(n for by_n in methods.values() for n in by_n)
        lines += ["", f"### Few-shot {TASK_COLUMNS.get(task, task.upper())} ({task})", "",
                  "| Method | " + " | ".join(f"n={n}" for n in ns) + " |", "|---|" + "---:|" * len(ns)]
        for m in _ordered(methods, METHOD_ORDER):
            cells = [format_cell(methods[m][n]) if n in methods[m] else "–" for n in ns]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines

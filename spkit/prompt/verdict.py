"""What a run shows, and when a result means nothing: the verdict sentences and the warnings of a run,
computed from its ``results.json`` alone (notebook 03's summary, ``results.md``, ``RUN/index.html`` and the
last lines of ``spkit run`` all print these).

The sentences (:func:`verdict_sentences`) compare, per task, deep prompts with the downstream head (share of
its score, share of its trainable parameters), with their control on a randomly initialised uLM (what
pretraining the uLM adds) and with fine-tuning where it ran.

The warnings (:func:`run_warnings`), each naming the runs and what to do:

* ``near_chance``: a main-table result within :data:`NEAR_POINTS` percentage points of, or below, its task's
  majority-class or chance rate (``class_rates``, below): the method predicts no better than the class prior;
* ``capped``: a run that stopped at its epoch cap (``settings.stop_reason`` ``"max_epochs"``): it may still
  be improving;
* ``control``: the control (``deep_prompt_random_lm``) at least as good as deep prompts on the same task:
  the run shows no benefit of the pretrained uLM;
* ``single_seed``: a result from one seed: no standard deviation, no way to tell it from noise.

``class_rates`` (results.json, top level; added by the prompting recipe, :func:`class_rates_from_units`; an
older record lacks it, and the report fills it in from the run's unit files when they are there)::

    "class_rates": {"kws": {"n_classes": 12, "chance": 0.0833, "test_n": 780,
                            "majority": 0.191, "majority_label": "_unknown_",
                            "test_counts": {"_unknown_": 149, "yes": 57, ...},
                            "from": "units/kws: label set of train, counts of test"}, ...}

``chance`` is 1 / the number of classes of the training split's label set (what the prompts choose from);
``majority`` is the test split's largest class share (what always answering that class scores). Only
classification tasks have them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spkit.artifacts import TASK_CORPUS
from spkit.prompt.names import METHOD_ORDER, TASK_COLUMNS, format_params
from spkit.prompt.tasks import build_spec, load_task

NEAR_POINTS = 1.0
"""A result at most this many percentage points above the majority-class or chance rate warns."""

HEADLINE_METHODS: dict[str, str] = {
    "deep_prompt": "deep prompts",
    "deep_prompt_random_lm": "control: deep prompts, random uLM",
    "downstream": "downstream head",
    "finetune": "fine-tuning",
}
"""The methods of the headline figure, in bar order, with the names the figure and sentences use."""

CONTROL = "deep_prompt_random_lm"
CLI_LIMIT = 6
"""The CLI's warning lines name at most this many results each (the report and results.md name all)."""
CLASSIFICATION_TASKS = ("kws", "intent", "lid")

CAP_PARAMETER = {"prompt": "epochs", "finetune": "finetune_epochs", "downstream": "downstream_epochs"}
"""The notebook parameter (``spkit run --param NAME=N``) holding each kind of run's epoch cap."""


@dataclass(frozen=True)
class RunWarning:
    """One warning: its kind (``near_chance``, ``capped``, ``control``, ``single_seed``), what is wrong, the
    runs it names (``"KWS deep_prompt_random_lm: 19.1 % = majority 19.1 %"``) and what to do."""

    kind: str
    title: str
    runs: tuple[str, ...]
    advice: str
    keys: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def text(self, limit: int | None = None) -> str:
        """One line: title, the runs (the first ``limit`` of them and how many more), the advice."""
        runs = list(self.runs if limit is None else self.runs[:limit])
        if len(runs) < len(self.runs):
            runs.append(f"and {len(self.runs) - len(runs)} more (the report lists them)")
        return f"{self.title}: {'; '.join(runs)}. {self.advice}"


# --------------------------------------------------------------------------------------------
# Chance and majority-class rates
# --------------------------------------------------------------------------------------------

def label_rates(train_labels: Iterable[str], test_labels: Iterable[str]) -> dict[str, Any]:
    """Chance (1 / classes of the training label set) and majority-class share of the test labels."""
    classes = set(train_labels)
    counts = Counter(test_labels)
    if not classes or not counts:
        raise ValueError("label_rates: no training or no test labels")
    label, top = max(sorted(counts.items()), key=lambda kv: kv[1])
    n = sum(counts.values())
    return {"n_classes": len(classes), "chance": 1.0 / len(classes), "test_n": n,
            "majority": top / n, "majority_label": label,
            "test_counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}


def class_rates_from_units(run_dir: str | os.PathLike, tasks: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``class_rates`` of the classification ``tasks`` whose unit files (``RUN/units/<corpus>/{train,test}
    .jsonl``) exist; the label set is :func:`spkit.prompt.tasks.build_spec`'s (the training split's)."""
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        if task not in CLASSIFICATION_TASKS:
            continue
        folder = Path(run_dir) / "units" / TASK_CORPUS[task]
        if not all((folder / f"{s}.jsonl").is_file() for s in ("train", "test")):
            continue
        data = load_task(task, folder, ("train", "test"))
        spec = build_spec(task, data)
        rates = label_rates(spec.labels, [e.label for e in data["test"]])
        out[task] = {**rates, "from": f"units/{TASK_CORPUS[task]}: label set of train, counts of test"}
    return out


def missing_class_rates(results: Mapping[str, Any]) -> list[str]:
    """The classification tasks of ``results`` without ``class_rates`` (an older record)."""
    have = results.get("class_rates") or {}
    return [t for t in results.get("tasks", {}) if t in CLASSIFICATION_TASKS and t not in have]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def task_name(task: str) -> str:
    return TASK_COLUMNS.get(task, task.upper())


def _ordered_tasks(results: Mapping[str, Any]) -> list[str]:
    tasks = list(results.get("tasks", {}))
    return [t for t in TASK_COLUMNS if t in tasks] + sorted(t for t in tasks if t not in TASK_COLUMNS)


def _ordered_methods(methods: Iterable[str]) -> list[str]:
    methods = list(methods)
    return [m for m in METHOD_ORDER if m in methods] + sorted(m for m in methods if m not in METHOD_ORDER)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _metric(info: Mapping[str, Any]) -> str:
    return str(info.get("metric", "metric")).replace("(lower is better)", "").strip()


def _better(a: float, b: float, lower_is_better: bool) -> bool:
    """``a`` strictly better than ``b``."""
    return a < b if lower_is_better else a > b


def _param_share(p: int, q: int) -> str:
    """``p`` trainable parameters against ``q``: ``1/37 of its parameters`` or ``2.3x its parameters``."""
    if not p or not q:
        return "an unknown share of its parameters"
    if p < q:
        return f"1/{q / p:.0f} of its parameters" if q / p >= 2 else f"{p / q:.2f} of its parameters"
    return f"{p / q:.1f}x its parameters"


# --------------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------------

def _and(parts: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def verdict_sentences(results: Mapping[str, Any]) -> list[str]:
    """Two or three sentences on what the run shows, from results.json alone (empty: no results yet):
    deep prompts against the downstream head (share of its score and of its parameters), against their
    random-uLM control (what pretraining adds), and fine-tuning where it ran."""
    tasks = results.get("tasks", {})
    vs_head: list[str] = []
    vs_control: list[str] = []
    vs_finetune: list[tuple[str, int]] = []
    for t in _ordered_tasks(results):
        info = tasks[t]
        ms = info.get("methods", {})
        low = bool(info.get("lower_is_better"))
        dp, ds, rc, ft = (ms.get(m) for m in ("deep_prompt", "downstream", CONTROL, "finetune"))
        name, metric = task_name(t), _metric(info)
        if dp and ds:
            share = _param_share(dp["trainable_params"], ds["trainable_params"])
            if low:
                vs_head.append(f"a {metric} of {_pct(dp['mean'])} on {name} against the head's "
                               f"{_pct(ds['mean'])} ({share})")
            else:
                ratio = f"{dp['mean'] / ds['mean']:.2f}" if ds["mean"] else "no share (the head scores 0)"
                pair = f"{100 * dp['mean']:.1f} vs {_pct(ds['mean'])}"
                if not vs_head:
                    vs_head.append(f"{ratio} of the downstream head's score on {name} ({pair} {metric}) "
                                   f"with {share}")
                else:
                    short = share.replace(" of its parameters", "").replace(" its parameters", "")
                    vs_head.append(f"{ratio} on {name} ({pair}, {short})")
        if dp and rc:
            diff = 100 * (rc["mean"] - dp["mean"] if low else dp["mean"] - rc["mean"])
            vs_control.append(f"{diff:+.1f} points on {name} ({100 * dp['mean']:.1f} vs {_pct(rc['mean'])})")
        if ft and (dp or ds):
            ref = ([f"deep prompts {_pct(dp['mean'])}"] if dp else []) + \
                  ([f"head {_pct(ds['mean'])}"] if ds else [])
            vs_finetune.append((f"{_pct(ft['mean'])} on {name} ({', '.join(ref)})", ft["trainable_params"]))
    out = []
    if vs_head:
        out.append("Deep prompts reach " + _and(vs_head) + ".")
    if vs_control:
        out.append("Against their control, the same prompts on a randomly initialised uLM, deep prompts "
                   "score " + _and(vs_control) + ": what pretraining the uLM adds.")
    if vs_finetune:
        params = sorted({p for _, p in vs_finetune})
        count = format_params(params[0]) if len(params) == 1 else \
            f"{format_params(params[0])}–{format_params(params[-1])}"
        out.append(f"Fine-tuning every uLM weight ({count} trainable parameters) reaches "
                   + _and([s for s, _ in vs_finetune]) + ".")
    if not out and tasks:
        best = []
        for t in _ordered_tasks(results):
            info = tasks[t]
            ms = info.get("methods", {})
            if ms:
                pick = min if info.get("lower_is_better") else max
                m = pick(ms, key=lambda k: ms[k]["mean"])
                best.append(f"{m} on {task_name(t)} ({_pct(ms[m]['mean'])} {_metric(info)})")
        out.append("Best method: " + _and(best) + ".")
    return out


# --------------------------------------------------------------------------------------------
# Warnings
# --------------------------------------------------------------------------------------------

def run_warnings(results: Mapping[str, Any], class_rates: Mapping[str, Any] | None = None
                 ) -> list[RunWarning]:
    """The warnings of ``results`` (main table): near chance or majority, stopped at the cap, a control at
    least as good as deep prompts, a single seed. ``class_rates`` defaults to ``results["class_rates"]``.
    A run without those problems gets none."""
    rates = dict(results.get("class_rates") or {}) if class_rates is None else dict(class_rates)
    tasks = results.get("tasks", {})
    near: list[str] = []
    near_keys: list[tuple[str, str]] = []
    capped: list[str] = []
    capped_keys: list[tuple[str, str]] = []
    cap_params: set[str] = set()
    control: list[str] = []
    control_keys: list[tuple[str, str]] = []
    single: list[str] = []
    single_keys: list[tuple[str, str]] = []
    for t in _ordered_tasks(results):
        info = tasks[t]
        ms = info.get("methods", {})
        low = bool(info.get("lower_is_better"))
        name = task_name(t)
        r = rates.get(t)
        for m in _ordered_methods(ms):
            e = ms[m]
            if r and not low:
                floor, which = max((r["majority"], "majority class"), (r["chance"], "chance"))
                if 100 * (e["mean"] - floor) <= NEAR_POINTS:
                    rel = "below" if e["mean"] < floor - 0.005 else "at"
                    near.append(f"{name} {m} {_pct(e['mean'])} ({rel} the {which} rate {_pct(floor)})")
                    near_keys.append((t, m))
            st = e.get("settings") or {}
            reasons = st.get("stop_reason") or []
            if "max_epochs" in reasons:
                seeds = [s for s, why in zip(e.get("seed_ids", []), reasons) if why == "max_epochs"]
                cap = st.get("max_epochs", "?")
                param = CAP_PARAMETER.get(str(st.get("kind")))
                if param:
                    cap_params.add(param)
                capped.append(f"{name} {m} (seed{'s' if len(seeds) != 1 else ''} "
                              f"{', '.join(str(s) for s in seeds)} of {len(reasons)} at cap {cap})")
                capped_keys.append((t, m))
            if e.get("n_seeds", len(e.get("seeds", []))) == 1:
                single.append(f"{name} {m}")
                single_keys.append((t, m))
        dp, rc = ms.get("deep_prompt"), ms.get(CONTROL)
        if dp and rc and not _better(dp["mean"], rc["mean"], low):
            control.append(f"{name}: control {_pct(rc['mean'])} vs deep prompts {_pct(dp['mean'])}")
            control_keys.append((t, CONTROL))
    out = []
    if near:
        out.append(RunWarning(
            "near_chance", f"At the chance or majority-class rate (within {NEAR_POINTS:g} point, or below)",
            tuple(near),
            "These methods learned nothing beyond always answering one class: the number says nothing about "
            "them yet. Train to convergence (`make run PRESET=full`, or more epochs) before reading it.",
            tuple(near_keys)))
    if capped:
        how = ", ".join(f"`--param {p}=N`" for p in sorted(cap_params)) or "a higher epoch cap"
        out.append(RunWarning(
            "capped", "Stopped at the epoch cap, not by patience", tuple(capped),
            f"These runs may still be improving: raise the cap ({how} on `spkit run`) or run "
            "`make run PRESET=full` (caps of 60-100 epochs, patience 10).", tuple(capped_keys)))
    if control:
        out.append(RunWarning(
            "control", "The control is at least as good as deep prompts", tuple(control),
            "Prompts on a random uLM match those on the pretrained one: this run shows no benefit of "
            "pretraining. Train both to convergence (`make run PRESET=full`, more epochs) and on more seeds "
            "before concluding.", tuple(control_keys)))
    if single:
        out.append(RunWarning(
            "single_seed", "A single seed (no standard deviation)", tuple(single),
            "One seed cannot tell a difference from noise: run more seeds (`--param seeds=[0,1,2]`, or "
            "`make run PRESET=full`).", tuple(single_keys)))
    return out


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def summary_markdown(results: Mapping[str, Any], figure: str | None = None, heading: bool = True
                     ) -> list[str]:
    """The lines that open ``results.md`` (and notebook 03's summary): the headline figure (``figure``: a
    path relative to the markdown file, ``.png`` shown inline, anything else linked), the verdict sentences
    and the warnings; ``heading``: under a ``## What this run shows`` heading. Nothing without results."""
    if not results.get("tasks"):
        return []
    lines = ["## What this run shows", ""] if heading else []
    if figure:
        lines += [f"![headline figure: test metric per task and method]({figure})" if figure.endswith(".png")
                  else f"Headline figure: [{figure}]({figure})", ""]
    lines += [" ".join(verdict_sentences(results)), ""]
    warns = run_warnings(results)
    if warns:
        lines += ["## Warnings", "", warnings_intro(warns), ""]
        lines += [f"- **{w.title}**: {'; '.join(w.runs)}. {w.advice}" for w in warns]
        lines.append("")
    return lines


def warnings_intro(warns: Sequence[RunWarning]) -> str:
    """The sentence above the warnings."""
    n = len({k for w in warns for k in w.keys})
    return (f"{len(warns)} warning{'s' if len(warns) != 1 else ''} on {n} result{'s' if n != 1 else ''} of "
            "the table: read those numbers with them.")


def cli_lines(results: Mapping[str, Any]) -> list[str]:
    """The last lines of ``spkit run``: the verdict, then one line per warning."""
    out = [f"[spkit run] {s}" for s in verdict_sentences(results)]
    out += [f"[spkit run] WARNING {w.text(limit=CLI_LIMIT)}" for w in run_warnings(results)]
    return out


def headline_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The headline figure's data: per task (in table order) the :data:`HEADLINE_METHODS` it ran
    (mean and std over seeds in percent, seeds, parameters) and its chance and majority rates."""
    rates = results.get("class_rates") or {}
    rows = []
    for t in _ordered_tasks(results):
        info = results["tasks"][t]
        ms = info.get("methods", {})
        bars = [{"method": m, "label": label, "mean": 100 * ms[m]["mean"],
                 "std": 100 * (ms[m]["std"] or 0.0), "n_seeds": ms[m].get("n_seeds", 1),
                 "params": ms[m]["trainable_params"]}
                for m, label in HEADLINE_METHODS.items() if m in ms]
        if not bars:
            continue
        r = rates.get(t) if not info.get("lower_is_better") else None
        rows.append({"task": t, "name": task_name(t), "metric": _metric(info),
                     "lower_is_better": bool(info.get("lower_is_better")), "bars": bars,
                     "chance": 100 * r["chance"] if r else None,
                     "majority": 100 * r["majority"] if r else None,
                     "majority_label": r.get("majority_label") if r else None})
    return rows


def flagged(warnings: Sequence[RunWarning]) -> dict[tuple[str, str], list[str]]:
    """``{(task, method): [warning kinds]}``: which results the warnings name."""
    out: dict[tuple[str, str], list[str]] = {}
    for w in warnings:
        for k in w.keys:
            out.setdefault(k, []).append(w.kind)
    return out

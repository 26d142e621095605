"""Small synthetic ``results.json`` records for the report, verdict and warning tests (written through
:func:`spkit.prompt.results.update_results`, as the recipe writes them): one whose results mean nothing yet
(the shape of issue 32's default run: a control at the majority-class rate on every seed, IC at 0 %, LID at
its majority rate, runs at their epoch cap, fine-tuning on one seed) and one without any of those problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spkit.prompt.results import RunResult, update_results

RATES: dict[str, dict[str, Any]] = {
    "kws": {"n_classes": 12, "chance": 1 / 12, "test_n": 780, "majority": 0.191,
            "majority_label": "_unknown_", "test_counts": {"_unknown_": 149}},
    "intent": {"n_classes": 31, "chance": 1 / 31, "test_n": 500, "majority": 0.05,
               "majority_label": "a|b|c", "test_counts": {"a|b|c": 25}},
    "lid": {"n_classes": 10, "chance": 0.1, "test_n": 500, "majority": 0.102, "majority_label": "en",
            "test_counts": {"en": 51}},
}
CAPS = {"prompt": 4, "downstream": 40, "finetune": 4}


def run(task: str, method: str, seed: int, value: float, stop: str = "patience", params: int = 98_000,
        metric: str = "accuracy") -> RunResult:
    """One run as a trainer reports it (settings, epochs run, stop reason)."""
    kind = {"downstream": "downstream", "finetune": "finetune"}.get(method, "prompt")
    cap = CAPS[kind]
    st = {"kind": kind, "lr": 0.05, "max_epochs": cap, "patience": 2, "stop_on": "valid_metric"}
    epochs = cap if stop == "max_epochs" else 2
    return RunResult(task, method, seed, value, metric, params, 100.0, 10.0,
                     extra={"settings": st, "epochs_run": epochs, "stop_reason": stop})


def meaningless_runs() -> list[RunResult]:
    runs = []
    for s in (0, 1, 2):
        runs += [run("kws", "deep_prompt", s, 0.25 + 0.01 * s, "max_epochs"),
                 run("kws", "deep_prompt_random_lm", s, 0.191, "max_epochs"),
                 run("kws", "downstream", s, 0.70 + 0.01 * s, params=300_000)]
    runs.append(run("kws", "finetune", 0, 0.30, "max_epochs", params=12_000_000))
    for s in (0, 1):
        runs += [run("intent", "deep_prompt", s, 0.0, "max_epochs"),
                 run("intent", "deep_prompt_random_lm", s, 0.0),
                 run("intent", "downstream", s, 0.42, params=300_000),
                 run("lid", "deep_prompt", s, 0.102), run("lid", "deep_prompt_random_lm", s, 0.102),
                 run("lid", "downstream", s, 0.9, params=300_000)]
    return runs


def sound_runs() -> list[RunResult]:
    runs = []
    for s in (0, 1, 2):
        runs += [run("kws", "deep_prompt", s, 0.60 + 0.01 * s),
                 run("kws", "deep_prompt_random_lm", s, 0.40 + 0.01 * s),
                 run("kws", "downstream", s, 0.80 + 0.01 * s, params=300_000),
                 run("kws", "finetune", s, 0.70 + 0.01 * s, params=12_000_000),
                 run("lid", "deep_prompt", s, 0.5 + 0.02 * s), run("lid", "deep_prompt_random_lm", s, 0.3),
                 run("lid", "downstream", s, 0.9, params=300_000)]
    return runs


def write_run(run_dir: Path, runs: list[RunResult], rates: dict[str, Any] | None = None) -> dict[str, Any]:
    """``run_dir/results.json`` and ``results.md`` from ``runs`` (class rates: :data:`RATES`)."""
    return update_results(Path(run_dir) / "results.json", runs, class_rates=RATES if rates is None else rates)

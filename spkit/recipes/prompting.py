"""Prompt tuning and its baselines on the same splits and seeds: what notebook 03 runs.

For every task (``kws``, ``intent``, ``lid``, ``asr``, ``sf``), method and seed, one run trains on the task's
training units under one stopping rule for every method (the validation metric, decoded as the test's
reported value, with the same ``patience``; an epoch cap per method set high enough for the curves to
flatten), and is scored on the test split (unseen speakers):

* ``deep_prompt``: SpeechPrompt's deep prompts (separate key and value prompts per layer through the frozen
  k/v projections, its input prompt and the separator) on the frozen pretrained uLM;
* ``input_prompt``: input prompts only;
* ``deep_prompt_random_lm``: the control, deep prompts on a randomly initialised frozen uLM of the
  same shape (what pretraining the uLM contributes);
* ``finetune``: every uLM weight trains on the same generation task;
* ``downstream``: SUPERB-style head on the frozen SSL model's weighted layers;
* ablations (one task): prompt length (``deep_prompt_L<n>``), verbalizer (``deep_prompt_verb-<kind>``),
  prompt form (``deep_prompt_tied``: one input per slot feeds both projections; ``prefix_prompt``: PEFT).

Classification results are scored by both decoders (:mod:`spkit.prompt.decode`): ``value`` (results.json
``mean``) by SpeechPrompt's greedy-until-``</s>`` exact match, ``extra.constrained`` by label scoring.

Few-shot (:func:`plan_few_shot`): on ``few_shot_tasks`` the ``few_shot_methods`` train again on
``n`` training examples per class (``few_shot_shots``; drawn per seed from the training split; the
validation split stays whole, the same for every method), into ``results.json`` ``few_shot.<task>.<method>.
<n>``; ``all`` is the main run of the same method.

``RUN/results.json`` records each classification task's chance and majority-class rates (``class_rates``:
:func:`spkit.prompt.verdict.class_rates_from_units`) and what the units are (``units``:
:func:`spkit.units.oracle.unit_model_summary` of ``RUN/units/unit_model.json``; the oracle topline's
results.md opens with its label). Each finished run is merged into ``RUN/results.json`` and ``RUN/results.md``
at once, with its settings (``runs[].extra.settings``; ``runs[].extra.settings_key`` hashes them with the uLM
and unit model): a rerun skips only runs already there with the same settings, and a run's saved training
state is resumed only when it was made with the same settings. Prompt files land in
``RUN/prompts/<task>/<method>/seed<N>/prompt.pt`` (few-shot runs: method folder ``<method>-shots<n>``).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from spkit.artifacts import TASK_CORPUS, load_run_ulm
from spkit.io import read_json, write_json
from spkit.layout import RunLayout
from spkit.prompt.checkpoint import save_prompt
from spkit.prompt.decode import evaluate, output_length_cap
from spkit.prompt.downstream import DownstreamSpec, LayerFeatureCache, train_downstream
from spkit.prompt.finetune import train_finetune
from spkit.prompt.model import PromptConfig, activation_batch, build_prompted
from spkit.prompt.random_lm import control_seed, random_ulm
from spkit.prompt.results import load_results, metric_name, run_result, shots_order, update_results
from spkit.prompt.train import TrainConfig, prepare_task, train, validation_decoder
from spkit.prompt.verdict import class_rates_from_units
from spkit.units.encoder import SpeechEncoder
from spkit.units.oracle import unit_model_summary

log = logging.getLogger(__name__)

METHODS = ("deep_prompt", "input_prompt", "deep_prompt_random_lm", "finetune", "downstream")


@dataclass
class PromptingConfig:
    """Settings of :func:`run_experiments`.

    Attributes:
        tasks, methods, seeds: what to run (every combination).
        method_seeds: seeds of particular methods instead of ``seeds`` (``{"finetune": (0,)}``: the costly
            baseline on fewer seeds where a time budget binds; results.json says ``n_seeds`` per method).
        prompt_length: L of deep / input prompts.
        verbalizer: ``frequency`` (SpeechPrompt v1), ``random``, ``learnable`` (v2's linear map) or
            ``learnable_freqinit``.
        lr, epochs, batch_size: the prompt trainer's Adam schedule; ``epochs`` is the prompts' epoch cap.
        patience, stop_on: the one stopping rule of every method (prompts, fine-tuning, downstream): keep
            the best validation epoch under ``stop_on`` (``valid_metric``: classification greedy_exact, the
            test's reported decoder; ASR CER decoded with ``valid_beam``; or ``valid_loss``), stop after
            ``patience`` epochs without improvement.
        valid_beam: ASR: beam width of the validation metric (1: greedy).
        adam_betas: Adam's betas (SpeechPrompt: (0.9, 0.98)).
        prompt_init: ``activations`` (the kit's CPU-scale finding) or ``random`` (N(0, 1), SpeechPrompt).
        separator_init: ``vocab`` (the frozen ``<s>`` row) or ``random`` (N(0, 1), SpeechPrompt).
        prompt_dropout: None: SpeechPrompt's 0.1 (0 for prefix_prompt); or a value.
        loss_positions: ``sep_label_eos`` (SpeechPrompt: ``<s>``, label tokens, ``</s>``), ``label_eos``
            (the kit's default: no ``<s>`` target) or ``label`` (see :mod:`spkit.prompt.tasks`).
        kws_balanced: KWS train/valid as s3prl's class-balanced draws (SpeechPrompt's KS data).
        finetune_lr, finetune_epochs: full fine-tuning (``finetune_epochs``: its epoch cap).
        downstream_lr, downstream_epochs: the SUPERB-style head (``downstream_epochs``: its epoch cap; cheap
            per epoch once the frozen features are cached).
        max_train: cap on training examples per task (None: all), to fit a time budget.
        max_valid: cap on validation examples per task (None: all): a fixed random subset, the same for every
            method, seed and epoch, so that scoring validation after every epoch (the stopping rule) fits a
            time budget; the test split is always whole.
        asr_beam: beam width of ASR and SF decoding.
        cpu_bf16: prompt and fine-tuning steps under bf16 autocast on a CPU that computes bf16 natively
            (:func:`spkit.prompt.train.cpu_has_native_bf16`; float32 elsewhere), as the uLM trainer's
            ``--cpu-bf16``.
        ablation_task: the task of the ablations (None: none).
        ablation_lengths, ablation_verbalizers: prompt lengths / verbalizers tried on ablation_task.
        ablation_forms: prompt forms tried on ablation_task besides deep_prompt (``deep_prompt_tied``,
            ``prefix_prompt``).
        ablation_seeds: seeds of the ablation runs.
        jobs: worker processes training runs side by side (each run uses one torch thread).
        length_buckets: training batches from length-sorted chunks of this many batches (0: plain random
            batches; see :func:`spkit.prompt.train.epoch_batches`).
        few_shot_tasks, few_shot_methods, few_shot_shots, few_shot_seeds: the few-shot sweep (examples per
            class; empty ``few_shot_shots``: no sweep).
        analysis_seeds: the seeds notebook 04 compares verbalizers on (None: every seed notebook 03 trained
            the frequency verbalizer's prompt with).
        task_settings: per-task overrides of the fields above (``{"asr": {"max_train": 300}}``; ``methods``
            too), so a time budget can go where it matters; a run's results are keyed by the settings it used.
    """

    tasks: Sequence[str] = ("kws", "intent", "lid", "asr", "sf")
    methods: Sequence[str] = METHODS
    seeds: Sequence[int] = (0, 1, 2)
    method_seeds: dict[str, Sequence[int]] = field(default_factory=dict)
    prompt_length: int = 20
    verbalizer: str = "frequency"
    lr: float = 5e-2
    epochs: int = 30
    batch_size: int = 32
    patience: int = 3
    stop_on: str = "valid_metric"
    valid_beam: int = 1
    adam_betas: tuple[float, float] = (0.9, 0.98)
    prompt_init: str = "activations"
    separator_init: str = "vocab"
    prompt_dropout: float | None = None
    loss_positions: str = "label_eos"
    kws_balanced: bool = False
    finetune_lr: float = 1e-3
    finetune_epochs: int = 30
    downstream_lr: float = 1e-3
    downstream_epochs: int = 100
    max_train: int | None = None
    max_valid: int | None = None
    asr_beam: int = 4
    cpu_bf16: bool = False
    ablation_task: str | None = "kws"
    ablation_lengths: Sequence[int] = (5, 40)
    ablation_verbalizers: Sequence[str] = ("random", "learnable")
    ablation_forms: Sequence[str] = ("deep_prompt_tied", "prefix_prompt")
    ablation_seeds: Sequence[int] = (0, 1, 2)
    jobs: int = 1
    length_buckets: int = 10
    few_shot_tasks: Sequence[str] = ("kws", "intent")
    # the random-uLM control beside the prompts at every n, as in the main table
    few_shot_methods: Sequence[str] = ("deep_prompt", "deep_prompt_random_lm", "downstream", "finetune")
    few_shot_shots: Sequence[int] = (1, 5, 10, 50)
    few_shot_seeds: Sequence[int] = (0, 1, 2)
    analysis_seeds: Sequence[int] | None = None
    task_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = {f.name for f in dataclasses.fields(self)} - {"task_settings", "extra", "tasks"}
        unknown = sorted(set(self.method_seeds) - set(METHODS))
        if unknown:
            raise ValueError(f"method_seeds: unknown methods {unknown}; choose from {METHODS}")
        for task, over in self.task_settings.items():
            if task not in TASK_CORPUS:
                raise ValueError(f"task_settings: unknown task {task!r}; choose from {sorted(TASK_CORPUS)}")
            unknown = sorted(set(over) - names)
            if unknown:
                raise ValueError(f"task_settings[{task!r}]: unknown settings {unknown}")

    def seeds_for(self, method: str) -> Sequence[int]:
        """The training seeds of ``method``: ``method_seeds[method]`` where given, else ``seeds``."""
        return self.method_seeds.get(method, self.seeds)

    def for_task(self, task: str) -> PromptingConfig:
        """This config with ``task_settings[task]`` applied."""
        over = self.task_settings.get(task)
        return dataclasses.replace(self, **over) if over else self


_NO_INPUT_PROMPT = ("deep_prompt", "deep_prompt_random_lm", "finetune", "downstream")

PRESETS: dict[str, PromptingConfig] = {
    "smoke": PromptingConfig(
        seeds=(0,),
        patience=2,
        prompt_length=4,
        epochs=2,
        finetune_epochs=2,
        downstream_epochs=2,
        max_train=48,
        asr_beam=2,
        ablation_lengths=(2,),
        ablation_verbalizers=("random",),
        ablation_seeds=(0,),
        few_shot_shots=(1, 2),
        few_shot_seeds=(0,),
    ),
    # Sized for the main job: under 30 minutes on 2 CPU cores with margin (the aim is 18 here: machines
    # differ by 1.7x), 2 workers. A prompt step on spkit-base's ulm_small costs about 0.6 s on one core even
    # with bf16 (batch 32 KWS clips), so the main job holds the paper's comparison where it is cheapest and
    # leaves the rest to the `full` preset: deep prompts, the random-uLM control and the downstream head on
    # KWS (3 seeds; fine-tuning of the whole uLM, the costliest step, on seed 0), IC, LID and SF (2 seeds);
    # few-shot on KWS; notebook 04 compares the verbalizers on seed 0. ASR runs in `full` only: at 200 clips
    # every method's CER was over 100 % (measured) while its decoding to the length cap took a third of the
    # prompting time. Every method stops on the validation metric with the same patience (ties broken by the
    # validation loss); the caps bound a run that keeps improving and a run stopped by one says so
    # (stop_reason "max_epochs" in results.json). Validation is a fixed subset (max_valid) because it is
    # scored after every epoch; test splits are whole.
    "default": PromptingConfig(
        tasks=("kws", "intent", "lid", "sf"),
        methods=("deep_prompt", "deep_prompt_random_lm", "downstream"),
        max_train=500, max_valid=150, epochs=4, finetune_epochs=4, downstream_epochs=40, patience=2, jobs=2,
        cpu_bf16=True,
        ablation_task=None,
        few_shot_tasks=("kws",), few_shot_methods=("deep_prompt", "deep_prompt_random_lm", "downstream"),
        few_shot_shots=(1, 10),
        few_shot_seeds=(0, 1), analysis_seeds=(0,),
        task_settings={
            "kws": {"methods": ("deep_prompt", "deep_prompt_random_lm", "downstream", "finetune"),
                    "method_seeds": {"finetune": (0,)}},
            "intent": {"max_train": 300, "max_valid": 100, "epochs": 3, "seeds": (0, 1)},
            "lid": {"max_train": 300, "max_valid": 100, "epochs": 3, "seeds": (0, 1)},
            "sf": {"max_train": 150, "max_valid": 50, "epochs": 3, "asr_beam": 1, "downstream_epochs": 10,
                   "seeds": (0, 1)},
        },
    ),
    # What issues 11 and 13 ask of a run, without the main job's clock: every training and validation clip,
    # every method on every task under the one stopping rule with caps far past the measured curves (deep
    # prompts on the scratch units were still improving at epoch 24), the ablations and the whole few-shot
    # sweep. Hours on 2 CPU cores; about as long as the default run on a GPU. Patience 10 for every method: a
    # deep prompt's validation accuracy on every KWS clip rises slowly and noisily (spkit-base, seed 0: 18.9 %
    # for 4 epochs, 25.7 at epoch 6, 20.0 and 20.8 after it, 25.1 at 9), so patience 3 stopped it at epoch 9
    # while it was still improving (measured). KWS prompts use SpeechPrompt v2's learnable verbalizer at lr
    # 1e-2, chosen on KWS *validation* (2000 training clips, 15 epochs, seed 0; docs/experiments/lr-sweep.md):
    # deep prompts 40.7 % against 26.0 % with the frequency verbalizer (its best rate of 1e-2 and 5e-2), the
    # control 37.3 % against 31.0 %. The other tasks keep the frequency verbalizer until measured; the
    # verbalizer ablation then tries frequency and random beside it.
    "full": PromptingConfig(
        epochs=60, finetune_epochs=60, downstream_epochs=100, patience=10, jobs=2, cpu_bf16=True,
        few_shot_shots=(1, 5, 10, 50), ablation_verbalizers=("frequency", "random"),
        task_settings={"kws": {"verbalizer": "learnable", "lr": 1e-2}},
    ),
    # SpeechPrompt's setting, setting by setting (docs/real-data.md has the table with sources).
    "paper": PromptingConfig(
        tasks=("kws", "intent"), seeds=(100501, 100502, 100503), lr=5e-3, adam_betas=(0.9, 0.98),
        batch_size=32, epochs=300, patience=5, stop_on="valid_loss", prompt_init="random",
        separator_init="random", prompt_dropout=None, loss_positions="sep_label_eos", kws_balanced=True,
        verbalizer="frequency", finetune_lr=5e-4, finetune_epochs=300, downstream_epochs=300,
        ablation_task=None, few_shot_shots=(),
        task_settings={"kws": {"prompt_length": 3}, "intent": {"prompt_length": 6}},
    ),
}
PRESETS["scratch"] = PRESETS["default"]  # the same prompting budgets; only the units and uLM differ
PRESETS["oracle"] = PRESETS["default"]  # the oracle topline: the same prompts, baselines, seeds and budgets


def preset_config(preset: str, **overrides: Any) -> PromptingConfig:
    """The preset's config with ``overrides`` (unknown names are an error)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


@dataclass(frozen=True)
class RunSpec:
    """One training run: a task, a method name (as in results.json), a seed, and its settings."""

    task: str
    method: str
    seed: int
    prompt: str = "deep_prompt"  # the prompt form (spkit.prompt.model.METHODS) of prompt runs
    length: int = 20
    verbalizer: str = "frequency"
    random_lm: bool = False
    shots: int | None = None  # few-shot runs: training examples per class (None: the whole training split)

    @property
    def folder(self) -> str:
        """The method folder under ``RUN/prompts/<task>/`` (few-shot runs: ``<method>-shots<n>``)."""
        return self.method if self.shots is None else f"{self.method}-shots{self.shots}"

    @property
    def kind(self) -> str:
        if self.method == "finetune":
            return "finetune"
        if self.method == "downstream":
            return "downstream"
        return "prompt"


def method_run(task: str, method: str, seed: int, tc: PromptingConfig, shots: int | None = None) -> RunSpec:
    """The run of a main method (:data:`METHODS`) on ``task``: its prompt form and uLM follow from the name,
    its prompt length and verbalizer from the task's config ``tc``."""
    prompt = "input_prompt" if method == "input_prompt" else "deep_prompt"
    return RunSpec(task, method, seed, prompt=prompt, length=tc.prompt_length, verbalizer=tc.verbalizer,
                   random_lm=method.endswith("random_lm"), shots=shots)


def plan_runs(config: PromptingConfig) -> list[RunSpec]:
    """Every run of ``config``: main methods over tasks and seeds, then the ablations. Prompt length and
    verbalizer are the task's (``task_settings`` may set them per task, as the paper preset does)."""
    runs: list[RunSpec] = []
    for task in config.tasks:
        if task not in TASK_CORPUS:
            raise ValueError(f"unknown task {task!r}; choose from {sorted(TASK_CORPUS)}")
        tc = config.for_task(task)
        for method in tc.methods:
            if method not in METHODS:
                raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
            runs += [method_run(task, method, seed, tc) for seed in tc.seeds_for(method)]
    if config.ablation_task and config.ablation_task in config.tasks:
        t = config.ablation_task
        tc = config.for_task(t)
        base = {"length": tc.prompt_length, "verbalizer": tc.verbalizer}
        for seed in config.ablation_seeds:
            for length in config.ablation_lengths:
                runs.append(
                    RunSpec(t, f"deep_prompt_L{length}", seed, length=length, verbalizer=tc.verbalizer)
                )
            for verb in config.ablation_verbalizers:
                runs.append(
                    RunSpec(t, f"deep_prompt_verb-{verb}", seed, length=tc.prompt_length, verbalizer=verb)
                )
            for form in config.ablation_forms:
                if form not in ("deep_prompt_tied", "prefix_prompt"):
                    raise ValueError(f"ablation_forms: {form!r} is not deep_prompt_tied or prefix_prompt")
                runs.append(RunSpec(t, form, seed, prompt=form, **base))
    return runs


def plan_few_shot(config: PromptingConfig) -> list[RunSpec]:
    """The few-shot sweep: ``few_shot_methods`` x ``few_shot_shots`` x ``few_shot_seeds`` on each of
    ``few_shot_tasks`` that ``config.tasks`` runs (``all`` examples is the main run, not planned here)."""
    runs: list[RunSpec] = []
    for task in config.few_shot_tasks:
        if task not in config.tasks:
            continue
        tc = config.for_task(task)
        for method in config.few_shot_methods:
            if method not in METHODS:
                raise ValueError(f"few_shot_methods: {method!r} is not one of {METHODS}")
            for n in config.few_shot_shots:
                if int(n) < 1:
                    raise ValueError(f"few_shot_shots: {n!r} is not a positive number of examples per class")
                runs += [method_run(task, method, seed, tc, shots=int(n)) for seed in config.few_shot_seeds]
    return runs


# The config fields each kind of run depends on: changing one reruns only the runs that use it.
_RUN_SETTINGS = {
    "prompt": ("lr", "epochs", "batch_size", "patience", "stop_on", "valid_beam", "max_train", "max_valid",
               "asr_beam", "length_buckets", "adam_betas", "prompt_init", "separator_init", "prompt_dropout",
               "loss_positions", "kws_balanced", "cpu_bf16"),
    "finetune": ("finetune_lr", "finetune_epochs", "batch_size", "patience", "stop_on", "valid_beam",
                 "max_train", "max_valid", "asr_beam", "length_buckets", "adam_betas", "loss_positions",
                 "kws_balanced", "cpu_bf16"),
    "downstream": ("downstream_lr", "downstream_epochs", "patience", "stop_on", "batch_size", "max_train",
                   "max_valid",
                   "kws_balanced"),
}


def run_settings(run: RunSpec, config: PromptingConfig) -> dict[str, Any]:
    """The settings of one run, as results.json records them (``runs[].extra.settings``): the run's spec
    (prompt form, length, verbalizer, shots) and every config field its kind uses, under plain names for the
    ones the issue of fair comparison asks about (``lr``, ``max_epochs``, ``patience``, ``stop_on``)."""
    used = {k: getattr(config, k) for k in _RUN_SETTINGS[run.kind]}
    lr = {"prompt": "lr", "finetune": "finetune_lr", "downstream": "downstream_lr"}[run.kind]
    cap = {"prompt": "epochs", "finetune": "finetune_epochs", "downstream": "downstream_epochs"}[run.kind]
    out: dict[str, Any] = {"kind": run.kind, "lr": used.pop(lr), "max_epochs": used.pop(cap)}
    if run.kind == "prompt":
        out.update(prompt_form=run.prompt, prompt_length=run.length, random_lm=run.random_lm)
    if run.kind != "downstream":
        out["verbalizer"] = run.verbalizer
    if run.shots is not None:
        out["shots"] = run.shots
    out.update(used)
    return json.loads(json.dumps(out, default=list))


def _settings_key(run: RunSpec, config: PromptingConfig, ulm_fp: str, units_fp: str) -> str:
    """Identifies a run's result: its spec, the settings its kind uses, and the models it builds on."""
    blob = json.dumps([dataclasses.asdict(run), run_settings(run, config), ulm_fp, units_fp], sort_keys=True,
                      default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _done(results: dict[str, Any], run: RunSpec, key: str) -> bool:
    if run.shots is None:
        entry = results.get("tasks", {}).get(run.task, {}).get("methods", {}).get(run.method, {})
    else:
        entry = results.get("few_shot", {}).get(run.task, {}).get(run.method, {}).get(str(run.shots), {})
    return any(
        r["seed"] == run.seed and r.get("extra", {}).get("settings_key") == key for r in entry.get("runs", [])
    )


def run_experiments(
    run_dir: str | os.PathLike,
    config: PromptingConfig,
    progress: bool = True,
    only: Sequence[RunSpec] | None = None,
) -> dict[str, Any]:
    """Train and score every planned run (or ``only`` these); returns the merged results.json content.

    Runs already in results.json with identical settings are skipped, so an interrupted notebook
    resumes where it stopped (and each prompt trainer resumes its own epoch checkpoints when they were made
    with the same settings; otherwise it trains again). ``only=None`` runs :func:`plan_runs` and then
    :func:`plan_few_shot`. With
    ``config.jobs > 1`` runs go to that many worker processes; every run uses one torch thread
    either way, so the numbers do not depend on ``jobs``.
    """
    layout = RunLayout.at(run_dir)
    ulm_fp, units_fp = _fingerprints(layout)
    runs = list(only) if only is not None else plan_runs(config) + plan_few_shot(config)
    # results.json says what the units are (the oracle topline's results.md opens with its label)
    units = unit_model_summary(read_json(layout.units / "unit_model.json"))
    results = load_results(layout.results_json)
    # ... and each classification task's chance and majority-class rates (the report's lines and warnings)
    rates = class_rates_from_units(layout.root, config.tasks)
    if results.get("units") != units or any((results.get("class_rates") or {}).get(t) != r
                                            for t, r in rates.items()):
        results = update_results(layout.results_json, [], units=units, class_rates=rates)
    todo = []
    for run in runs:
        key = _settings_key(run, config.for_task(run.task), ulm_fp, units_fp)
        if not _done(results, run, key):
            todo.append((run, key))
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc="prompt runs", unit="run",
               disable=not progress)
    if config.jobs > 1 and len(todo) > 1:
        with cf.ProcessPoolExecutor(config.jobs, mp_context=mp.get_context("spawn"),
                                    initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(_worker_run, str(layout.root), run, config.for_task(run.task), key)
                       for run, key in todo]
            for fut in cf.as_completed(futures):
                results = update_results(layout.results_json, [fut.result()])
                bar.update(1)
    else:
        for run, key in todo:
            results = update_results(layout.results_json,
                                     [_worker_run(str(layout.root), run, config.for_task(run.task), key)])
            bar.update(1)
    bar.close()
    write_json(layout.root / "prompting_config.json", dataclasses.asdict(config))
    return results


_WORKER_STATE: dict[str, Any] = {}


def exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """Worker-pool initializer: end this worker when ``parent_pid`` is gone.

    A killed parent (a stopped notebook kernel, ``kill`` of ``spkit run``) would otherwise leave its spawned
    workers training to the end of their run; their files are written atomically, so ending them loses only
    the epoch in progress (the trainer resumes from its last ``train_state.pt``).
    """
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _fingerprints(layout: RunLayout) -> tuple[str, str]:
    lm, _ = load_run_ulm(layout.root)
    unit_model = read_json(layout.units / "unit_model.json")
    return lm.fingerprint(), f"{unit_model['extractor_fingerprint']}/{unit_model['kmeans_fingerprint']}"


def _worker_run(run_dir: str, run: RunSpec, config: PromptingConfig, key: str) -> Any:
    """Train one run in this process (the uLM and task data are loaded once per process)."""
    torch.set_num_threads(1)
    state = _WORKER_STATE
    if state.get("run_dir") != run_dir:
        state.clear()
        layout = RunLayout.at(run_dir)
        lm, dictionary = load_run_ulm(layout.root)
        state.update(run_dir=run_dir, layout=layout, lm=lm, dictionary=dictionary, cache={},
                     unit_model=read_json(layout.units / "unit_model.json"))
    res = train_one(state["layout"], run, config, state["lm"], state["dictionary"], state["unit_model"],
                    state["cache"], progress=False)
    res.extra["settings_key"] = key
    res.extra["settings"] = run_settings(run, config)
    res.shots = run.shots
    log.info("%s/%s/seed%d: %s = %.4f", run.task, run.method, run.seed, res.metric, res.value)
    return res


def _task_data(
    layout: RunLayout, run: RunSpec, config: PromptingConfig, dictionary: Any, lm: Any, cache: dict[str, Any]
) -> tuple[dict[str, list[Any]], Any]:
    balance = config.kws_balanced and run.task == "kws"
    # The balanced draws are seeded by the run's seed (a resample per seed, as a rerun of s3prl's sampler).
    seeded = run.verbalizer == "random" or balance
    key = (f"{run.task}/{run.verbalizer}/{run.seed if seeded else 0}/{config.loss_positions}/{balance}/"
           f"{config.max_train}/{config.max_valid}")
    if run.shots is not None:
        whole = dataclasses.replace(run, shots=None)
        full, collator = _task_data(layout, whole, config, dictionary, lm, cache)
        few = f"{key}/shots{run.shots}/seed{run.seed}"
        if few not in cache:
            cache[few] = ({**full, "train": few_shot_subset(full["train"], run.shots, run.seed)}, collator)
        return cache[few]
    if key not in cache:
        data, collator = prepare_task(
            run.task,
            layout.unit_dir(TASK_CORPUS[run.task]),
            dictionary,
            verbalizer=run.verbalizer,
            seed=run.seed,
            max_len=lm.cfg.max_positions,
            loss_positions=config.loss_positions,
            balance=balance,
        )
        # Fixed random subsets (not the first uids: those are sorted by label), the same for every method and
        # seed, so all runs of a task train and are judged on the same examples.
        data = {**data, "train": fixed_subset(data["train"], config.max_train, stream=0),
                "valid": fixed_subset(data["valid"], config.max_valid, stream=1)}
        cache[key] = (data, collator)
    return cache[key]


def fixed_subset(items: Sequence[Any], n: int | None, stream: int) -> list[Any]:
    """``n`` of ``items`` drawn once by a generator seeded with ``stream`` alone (no run seed, no method), in
    their order; all of them when ``n`` is None or not smaller. ``max_train`` uses stream 0, ``max_valid``
    stream 1."""
    if n is None or len(items) <= n:
        return list(items)
    g = torch.Generator().manual_seed(stream)
    return [items[i] for i in sorted(torch.randperm(len(items), generator=g)[:n].tolist())]


def few_shot_subset(train: Sequence[Any], shots: int, seed: int) -> list[Any]:
    """``shots`` training examples per class label (all of a class that has fewer), drawn with ``seed``,
    in the split's order. The label set stays the whole training split's (the task spec is built before)."""
    by_label: dict[str, list[int]] = {}
    for i, e in enumerate(train):
        by_label.setdefault(e.label, []).append(i)
    g = torch.Generator().manual_seed(10_007 + int(seed))
    keep: list[int] = []
    for label in sorted(by_label):
        idx = by_label[label]
        keep += [idx[j] for j in torch.randperm(len(idx), generator=g)[:shots].tolist()]
    return [train[i] for i in sorted(keep)]


def train_one(
    layout: RunLayout,
    run: RunSpec,
    config: PromptingConfig,
    lm: Any,
    dictionary: Any,
    unit_model: dict[str, Any],
    cache: dict[str, Any],
    progress: bool = False,
) -> Any:
    """Train one run, save its prompt (or model) file, score it on the test split -> RunResult."""
    out_dir = layout.prompt_dir(run.task, run.folder, run.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    if run.kind == "downstream":
        return _train_downstream(layout, run, config, lm, dictionary, cache, progress)
    data, collator = _task_data(layout, run, config, dictionary, lm, cache)
    # The task data are cached per worker, a learnable verbalizer head trains in place: each run starts from
    # its own head, drawn from its seed, whatever ran before it in this process.
    collator = dataclasses.replace(collator, verbalizer=collator.verbalizer.fresh(run.seed))
    spec, verbalizer = collator.spec, collator.verbalizer
    fingerprints = {
        "kmeans": unit_model["kmeans_fingerprint"],
        "extractor": unit_model["extractor_fingerprint"],
    }
    # Sequence outputs stop at the longest training transcript + 10 tokens: a decoder that never emits
    # </s> costs no more than that, and no test reference sets the length.
    max_len = output_length_cap(data["train"], collator) if spec.kind == "sequence" else None
    # The one stopping rule (config.stop_on, config.patience) of every method; the cap is per method.
    finetune = run.kind == "finetune"
    tcfg = TrainConfig(
        lr=config.finetune_lr if finetune else config.lr,
        adam_betas=tuple(config.adam_betas),
        batch_size=config.batch_size,
        max_epochs=config.finetune_epochs if finetune else config.epochs,
        patience=config.patience,
        stop_on=config.stop_on,
        valid_beam=config.valid_beam,
        valid_max_len=max_len,
        seed=run.seed,
        metric_every=0,
        length_buckets=config.length_buckets,
        cpu_bf16=config.cpu_bf16,
    )
    # What else makes this run itself (a saved train_state.pt made with other settings is not resumed).
    identity = run_settings(run, config) | {"spec": dataclasses.asdict(run)}
    if finetune:
        model, report = train_finetune(
            lm, spec, verbalizer, data, collator, tcfg, out_dir=out_dir, progress=progress, settings=identity
        )
    else:
        lm_seed = control_seed(run.seed) if run.random_lm else None
        base_lm = random_ulm(lm, seed=lm_seed) if lm_seed is not None else lm
        pcfg = PromptConfig(method=run.prompt, length=run.length, init=config.prompt_init,
                            dropout=config.prompt_dropout, separator_init=config.separator_init)
        model = build_prompted(
            base_lm,
            spec,
            verbalizer,
            pcfg,
            init_batch=activation_batch(collator, data["train"], seed=run.seed),
            seed=run.seed,
        )
        report = train(model, data, collator, tcfg, out_dir=out_dir, progress=progress, settings=identity)
        save_prompt(
            out_dir / "prompt.pt",
            model,
            fingerprints,
            info={
                "task": run.task,
                "method": run.method,
                "seed": run.seed,
                "random_lm": run.random_lm,
                **({"random_lm_seed": lm_seed} if lm_seed is not None else {}),
                "settings": run_settings(run, config),
                "log": report.log,
            },
        )
    ev = evaluate(model, data["test"], collator, batch_size=64, beam=config.asr_beam, max_len=max_len)
    # The decoding settings go beside the score, so `spkit predict` decodes as this evaluation did.
    decode = {"beam": config.asr_beam, "max_len": max_len} if spec.kind == "sequence" else None
    write_json(
        out_dir / "eval.json",
        {k: v for k, v in ev.items() if k != "predictions"}
        | {"predictions": ev.get("predictions", [])[:2000], "log": report.log, "decode": decode},
    )
    extra: dict[str, Any] = {k: ev[k] for k in ("wer", "cer") if k in ev and ev[k] != ev["value"]}
    if "slot_value_cer" in ev:  # SF: SUPERB's second metric, beside slot_type_f1 in results.json
        extra["slot_value_cer"] = ev["slot_value_cer"]
    if "decoder" in ev:  # classification: the paper's decoder is the value, label scoring beside it
        extra["decoder"] = ev["decoder"]
        if "constrained" in ev:
            extra["constrained"] = ev["constrained"]["value"]
    else:
        extra["decoder"] = f"beam{config.asr_beam}"
    if not finetune:
        extra["live_params"] = model.num_live()
    # The stopping rule's record: best validation score (what `spkit predict` picks its seed by), epochs run
    # and why training stopped.
    valid = report.best_valid_metric if report.best_valid_metric is not None else float("nan")
    extra.update(valid=valid, valid_decoder=validation_decoder(spec.kind, config.valid_beam),
                 epochs_run=report.epochs_run, stop_reason=report.stop_reason)
    return run_result(
        run.task,
        run.method,
        run.seed,
        ev["value"],
        metric_name(ev["metric"], ev["lower_is_better"]),
        report,
        extra=extra,
    )


def _train_downstream(
    layout: RunLayout,
    run: RunSpec,
    config: PromptingConfig,
    lm: Any,
    dictionary: Any,
    cache: dict[str, Any],
    progress: bool,
) -> Any:
    data, collator = _task_data(layout, run, config, dictionary, lm, cache)
    if "feature_cache" not in cache:
        extractor = SpeechEncoder.from_run(layout.root).extractor
        cache["feature_cache"] = LayerFeatureCache(extractor, layout.root / "prompts" / "feature_cache")
    fc = cache["feature_cache"]
    res = train_downstream(
        DownstreamSpec.from_task(collator.spec),
        data,
        fc.extractor,
        seed=run.seed,
        max_epochs=config.downstream_epochs,
        lr=config.downstream_lr,
        batch_size=config.batch_size,
        cache=fc,
        patience=config.patience,
        stop_on=config.stop_on,
        progress=progress,
    )
    res.extra["decoder"] = "ctc_greedy" if collator.spec.kind == "sequence" else "argmax"
    res.extra["valid_decoder"] = res.extra["decoder"]
    out = layout.prompt_dir(run.task, run.folder, run.seed)
    write_json(out / "eval.json", {"metric": res.metric, "value": res.value, "log": res.log, **res.extra})
    return res.to_run()


CONVERGENCE_RECORD = Path(__file__).resolve().parents[2] / "docs" / "results" / "prompt_convergence.json"
"""The committed record of the prompt-recipe convergence study (scripts/prompt_convergence.py), which notebook
03 draws beside the run's own curves."""


def convergence_record(path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The convergence study's record (:data:`CONVERGENCE_RECORD` by default), or None when it is absent."""
    p = Path(path) if path is not None else CONVERGENCE_RECORD
    return read_json(p) if p.is_file() else None


def training_curves(run_dir: str | os.PathLike, task: str, key: str = "valid_metric"
                    ) -> dict[str, list[float]]:
    """Per method (first seed, few-shot runs left out): ``key`` per epoch from the runs' eval.json logs
    (``valid_metric``: the stopping criterion's score by default; ``valid_loss``; ``train_loss``), to show
    that each method's curve has flattened before its cap."""
    layout = RunLayout.at(run_dir)
    curves: dict[str, list[float]] = {}
    base = layout.root / "prompts" / task
    for method_dir in sorted(p for p in base.glob("*") if p.is_dir()) if base.is_dir() else []:
        if "-shots" in method_dir.name:
            continue
        seeds = sorted(method_dir.glob("seed*/eval.json"))
        if not seeds:
            continue
        vals = [e.get(key) for e in read_json(seeds[0]).get("log", []) if e.get(key) is not None]
        if vals:
            curves[method_dir.name] = vals
    return curves


def few_shot_curves(results: dict[str, Any], task: str) -> dict[str, list[tuple[str, float, float]]]:
    """``{method: [(n, mean, std), ...]}`` from results.json ``few_shot.<task>``, n ascending, ``all`` last
    (std 0 with one seed)."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    for method, by_n in (results.get("few_shot") or {}).get(task, {}).items():
        out[method] = [(n, by_n[n]["mean"], by_n[n]["std"] or 0.0) for n in shots_order(by_n)]
    return out


def headline(results: dict[str, Any], task: str = "kws") -> dict[str, Any]:
    """The paper's claim at our scale, for one task: deep prompts vs the downstream baseline."""
    methods = results.get("tasks", {}).get(task, {}).get("methods", {})
    dp, ds = methods.get("deep_prompt"), methods.get("downstream")
    if not dp or not ds:
        return {}
    return {
        "task": task,
        "deep_prompt": dp["mean"],
        "downstream": ds["mean"],
        "ratio": dp["mean"] / ds["mean"] if ds["mean"] else float("nan"),
        "param_ratio": dp["trainable_params"] / ds["trainable_params"] if ds["trainable_params"] else None,
    }

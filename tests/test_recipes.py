"""The stage recipes' planning logic (the stages themselves run in tests/test_notebooks.py)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from spkit.recipes import prompting, unit_discovery, unit_lm


def test_plan_runs_covers_tasks_methods_seeds_and_ablations():
    cfg = prompting.preset_config("default")
    runs = prompting.plan_runs(cfg)
    main = [r for r in runs if r.method in prompting.METHODS]
    # seeds and methods per task (task_settings): each task's own
    assert len(main) == sum(len(cfg.for_task(t).seeds_for(m))
                            for t in cfg.tasks for m in cfg.for_task(t).methods)
    for t in cfg.tasks:
        assert {r.seed for r in main if r.task == t} == set(cfg.for_task(t).seeds)
        for m in cfg.for_task(t).methods:
            seeds = cfg.for_task(t).seeds_for(m)
            assert sorted(r.seed for r in main if (r.task, r.method) == (t, m)) == sorted(seeds)
        assert len(cfg.for_task(t).seeds) >= 2  # a std needs two seeds
    # the main job: the paper's comparison on every task it runs, fine-tuning on KWS
    paper = ("deep_prompt", "deep_prompt_random_lm", "downstream")
    assert {(r.task, r.method) for r in main} >= {(t, m) for t in cfg.tasks for m in paper}
    assert {r.task for r in main if r.method == "finetune"} == {"kws"}
    assert {r.seed for r in main if r.task == "kws"} == {0, 1, 2}
    # fine-tuning the whole uLM, the costliest run, on one seed in the main job; every seed in `full`
    assert {r.seed for r in main if r.method == "finetune"} == {0}
    full_ft = {r.seed for r in prompting.plan_runs(prompting.preset_config("full")) if r.method == "finetune"}
    assert full_ft == {0, 1, 2}
    with pytest.raises(ValueError, match="method_seeds"):
        prompting.preset_config("default", method_seeds={"lora": (0,)})
    with pytest.raises(ValueError, match="unknown method"):
        prompting.plan_runs(prompting.preset_config("default", task_settings={"lid": {"methods": ("lora",)}}))
    # the main job runs no ablations (notebook 04 compares the verbalizers); `full` runs them all on KWS
    assert {r.method for r in runs if r.method not in prompting.METHODS} == set()
    cfg = prompting.preset_config("full")
    runs = prompting.plan_runs(cfg)
    abl = {r.method for r in runs if r.method not in prompting.METHODS}
    assert abl == ({f"deep_prompt_L{n}" for n in cfg.ablation_lengths}
                   | {f"deep_prompt_verb-{v}" for v in cfg.ablation_verbalizers}
                   | set(cfg.ablation_forms))
    assert abl >= {"deep_prompt_L40", "deep_prompt_verb-frequency", "prefix_prompt"}
    with pytest.raises(ValueError, match="ablation_forms"):
        prompting.plan_runs(dataclasses.replace(cfg, ablation_forms=("deep",)))
    assert all(r.task == "kws" for r in runs if r.method in abl)
    inputs = prompting.plan_runs(dataclasses.replace(cfg, methods=("input_prompt",), task_settings={}))
    assert {r.prompt for r in inputs if r.method == "input_prompt"} == {"input_prompt"}
    mains = {r.prompt for r in runs if r.method.startswith("deep_prompt") and r.method not in abl}
    assert mains == {"deep_prompt"}
    assert {r.prompt for r in runs if r.method in cfg.ablation_forms} == set(cfg.ablation_forms)
    assert all(r.random_lm for r in runs if r.method == "deep_prompt_random_lm")
    assert len(set(runs)) == len(runs)


def test_settings_key_changes_only_for_the_runs_that_use_a_setting():
    cfg = prompting.preset_config("default")
    runs = {r.method: r for r in prompting.plan_runs(cfg) if r.task == "kws" and r.seed == 0}
    more_ds = dataclasses.replace(cfg, downstream_epochs=cfg.downstream_epochs + 1)
    more_lr = dataclasses.replace(cfg, lr=cfg.lr / 2)

    def key(run, c):
        return prompting._settings_key(run, c, "ulm", "units")

    assert key(runs["downstream"], cfg) != key(runs["downstream"], more_ds)
    assert key(runs["deep_prompt"], cfg) == key(runs["deep_prompt"], more_ds)
    assert key(runs["deep_prompt"], cfg) != key(runs["deep_prompt"], more_lr)
    assert key(runs["finetune"], cfg) == key(runs["finetune"], more_lr)
    assert key(runs["deep_prompt"], cfg) != prompting._settings_key(runs["deep_prompt"], cfg, "ulm2", "units")


def test_training_and_validation_subsets_are_fixed_and_keyed():
    items = list(range(50))
    a = prompting.fixed_subset(items, 10, stream=1)
    assert a == prompting.fixed_subset(items, 10, stream=1) == sorted(a) and len(set(a)) == 10
    assert a != prompting.fixed_subset(items, 10, stream=0)  # validation draws apart from training
    assert prompting.fixed_subset(items, None, stream=1) == items == prompting.fixed_subset(items, 50, 1)
    cfg = prompting.preset_config("default")
    assert cfg.max_valid is not None and all(cfg.for_task(t).max_valid for t in cfg.tasks)
    fewer = dataclasses.replace(cfg, max_valid=cfg.max_valid - 1)
    for method in ("deep_prompt", "finetune", "downstream"):  # every method is judged on the same subset
        run = prompting.RunSpec("kws", method, 0)
        assert prompting.run_settings(run, cfg)["max_valid"] == cfg.max_valid
        assert prompting._settings_key(run, cfg, "u", "k") != prompting._settings_key(run, fewer, "u", "k")


def test_task_settings_apply_to_their_task_only_and_key_its_results():
    cfg = prompting.preset_config("default", task_settings={"asr": {"max_train": 10, "epochs": 2}})
    assert cfg.for_task("asr").max_train == 10 and cfg.for_task("asr").epochs == 2
    assert cfg.for_task("kws").max_train == cfg.max_train and cfg.for_task("kws") is cfg
    run = prompting.RunSpec("asr", "deep_prompt", 0)
    other = prompting.preset_config("default", task_settings={"asr": {"max_train": 11, "epochs": 2}})
    assert (prompting._settings_key(run, cfg.for_task("asr"), "u", "k")
            != prompting._settings_key(run, other.for_task("asr"), "u", "k"))
    with pytest.raises(ValueError, match="unknown task 'sv'"):
        prompting.preset_config("default", task_settings={"sv": {"epochs": 1}})
    with pytest.raises(ValueError, match=r"task_settings\['kws'\]: unknown settings \['epoch'\]"):
        prompting.preset_config("default", task_settings={"kws": {"epoch": 1}})
    # the default preset spends most of its budget on KWS: the other tasks train on fewer examples
    d = prompting.preset_config("default")
    assert all(d.for_task(t).max_train < d.max_train for t in ("intent", "lid", "sf"))
    assert d.length_buckets > 0 and d.for_task("sf").length_buckets == d.length_buckets


def test_unknown_task_method_preset_and_field():
    with pytest.raises(ValueError, match="unknown task 'sv'"):
        prompting.plan_runs(prompting.preset_config("smoke", tasks=("sv",)))
    with pytest.raises(ValueError, match="unknown method"):
        prompting.plan_runs(prompting.preset_config("smoke", methods=("lora",)))
    for module in (prompting, unit_discovery, unit_lm):
        with pytest.raises(ValueError, match="unknown preset 'huge'"):
            module.preset_config("huge")
        with pytest.raises(TypeError):
            module.preset_config("smoke", no_such_field=1)


def test_default_budgets_are_step_based():
    # Wall-clock or CPU-time budgets would make results depend on the machine's load.
    assert unit_discovery.preset_config("scratch").pretrain_max_seconds is None
    assert unit_lm.preset_config("scratch").max_cpu_seconds is None


def test_default_builds_on_the_shipped_base_and_scratch_trains_from_zero():
    from spkit.presets import SHIPPED_BASE, corpus_preset

    assert unit_discovery.PRESETS["default"].base == str(SHIPPED_BASE)
    assert unit_lm.PRESETS["default"].base == str(SHIPPED_BASE)
    assert unit_discovery.PRESETS["scratch"].base is None and unit_lm.PRESETS["scratch"].base is None
    assert unit_discovery.PRESETS["scratch"].pretrain_steps == 1000
    assert corpus_preset("scratch") == corpus_preset("default") == "default"
    assert corpus_preset("smoke") == "smoke"
    with pytest.raises(ValueError, match="real data sets"):
        corpus_preset("paper")


def test_full_preset_is_default_models_with_every_clip_and_the_whole_grid():
    from spkit.presets import RUN_PRESETS, corpus_preset

    assert "full" in RUN_PRESETS and corpus_preset("full") == "default"
    assert unit_discovery.PRESETS["full"] == unit_discovery.PRESETS["default"]
    assert unit_lm.PRESETS["full"] == unit_lm.PRESETS["default"]
    full, main = prompting.preset_config("full"), prompting.preset_config("default")
    for task in full.tasks:
        f, m = full.for_task(task), main.for_task(task)
        assert f.max_train is None and f.max_valid is None  # every training and validation clip
        assert set(f.methods) == set(prompting.METHODS) >= set(m.methods)  # every method on every task
        # the same rule, caps at least the main job's
        assert f.patience >= m.patience and f.stop_on == m.stop_on == "valid_metric"
        assert f.epochs >= m.epochs and f.finetune_epochs >= m.finetune_epochs
        assert f.downstream_epochs >= m.downstream_epochs
    # issue 13's few-shot sweep: 1, 5, 10, 50 (and all: the main table) x the methods x KWS and IC
    assert tuple(full.few_shot_shots) == (1, 5, 10, 50) and set(full.few_shot_tasks) == {"kws", "intent"}
    assert set(full.few_shot_methods) == {"deep_prompt", "deep_prompt_random_lm", "downstream", "finetune"}
    assert len(prompting.plan_runs(full)) > len(prompting.plan_runs(main))
    # KWS prompts: the learnable verbalizer (chosen on validation); its ablation tries the two others, and
    # notebook 04 finds each verbalizer under the right method folder
    kws = full.for_task("kws")
    assert (kws.verbalizer, kws.lr) == ("learnable", 1e-2)
    assert full.for_task("intent").verbalizer == "frequency"
    kws_runs = [r for r in prompting.plan_runs(full) if r.task == "kws"]
    main_prompts = {r.verbalizer for r in kws_runs if r.method in ("deep_prompt", "deep_prompt_random_lm")}
    assert main_prompts == {"learnable"}
    ablation = {r.method: r.verbalizer for r in kws_runs if r.method.startswith("deep_prompt_verb")}
    assert ablation == {"deep_prompt_verb-frequency": "frequency", "deep_prompt_verb-random": "random"}
    from spkit.analysis.verbalizer import verbalizer_methods
    assert verbalizer_methods("learnable") == {"frequency": "deep_prompt_verb-frequency",
                                               "random": "deep_prompt_verb-random",
                                               "learnable": "deep_prompt"}


def test_one_stopping_rule_and_settings_recorded_for_every_method():
    cfg = prompting.preset_config("default")
    runs = {r.method: r for r in prompting.plan_runs(cfg) if r.task == "kws" and r.seed == 0}
    st = {m: prompting.run_settings(runs[m], cfg) for m in ("deep_prompt", "finetune", "downstream")}
    # the same patience and criterion for every method; each its own learning rate and cap
    assert {s["patience"] for s in st.values()} == {cfg.patience}
    assert {s["stop_on"] for s in st.values()} == {"valid_metric"}
    assert st["deep_prompt"]["lr"] == cfg.lr and st["finetune"]["lr"] == cfg.finetune_lr
    assert st["downstream"]["lr"] == cfg.downstream_lr
    caps = [st[m]["max_epochs"] for m in ("deep_prompt", "finetune", "downstream")]
    assert caps == [cfg.epochs, cfg.finetune_epochs, cfg.downstream_epochs]
    assert st["deep_prompt"]["prompt_form"] == "deep_prompt"
    assert st["deep_prompt"]["prompt_length"] == cfg.prompt_length
    # the patience is the downstream head's too: changing it reruns it
    more_patience = dataclasses.replace(cfg, patience=cfg.patience + 1)
    assert (prompting._settings_key(runs["downstream"], cfg, "u", "k")
            != prompting._settings_key(runs["downstream"], more_patience, "u", "k"))
    # the paper preset stops every method on the validation loss, as SpeechPrompt did
    assert prompting.preset_config("paper").stop_on == "valid_loss"


def test_few_shot_plan_and_subset():
    cfg = prompting.preset_config("smoke")
    few = prompting.plan_few_shot(cfg)
    methods = ("deep_prompt", "deep_prompt_random_lm", "downstream", "finetune")
    assert {(r.task, r.method) for r in few} == {(t, m) for t in ("kws", "intent") for m in methods}
    # the control beside the prompts at every n: a random uLM, the prompt form of deep prompts
    assert all(r.random_lm == (r.method == "deep_prompt_random_lm") for r in few)
    assert {r.prompt for r in few if r.kind == "prompt"} == {"deep_prompt"}
    assert sorted({r.shots for r in few}) == [1, 2] and {r.seed for r in few} == {0}
    assert all(r.folder == f"{r.method}-shots{r.shots}" for r in few)
    assert prompting.plan_few_shot(prompting.preset_config("paper")) == []
    d = prompting.preset_config("default")
    n_few = len(d.few_shot_tasks) * len(d.few_shot_methods) * len(d.few_shot_shots) * len(d.few_shot_seeds)
    assert len(prompting.plan_few_shot(d)) == n_few == 1 * 3 * 2 * 2  # KWS; the whole sweep is `full`
    with pytest.raises(ValueError, match="few_shot_methods"):
        prompting.plan_few_shot(dataclasses.replace(cfg, few_shot_methods=("lora",)))
    # n per class, drawn per seed, classes with fewer keep all
    from spkit.prompt.tasks import TaskExample

    train = [TaskExample(f"u{i}", "", "train", "s", [1], lab)
             for i, lab in enumerate(["a"] * 10 + ["b"] * 6 + ["c"] * 1)]
    sub = prompting.few_shot_subset(train, 2, seed=0)
    assert sorted(e.label for e in sub) == ["a", "a", "b", "b", "c"]
    assert [e.uid for e in sub] == sorted((e.uid for e in sub), key=lambda u: int(u[1:]))
    assert prompting.few_shot_subset(train, 2, seed=0) == sub
    assert any(prompting.few_shot_subset(train, 2, seed=s) != sub for s in range(1, 5))
    assert len(prompting.few_shot_subset(train, 50, seed=0)) == len(train)


def test_few_shot_curves_and_figure():
    """n ascending as numbers (10 after 5), ``all`` last, on the axis too; one seed's std None drawn as 0."""
    from spkit import viz

    results = {"few_shot": {"kws": {
        "deep_prompt": {"10": {"mean": 0.3, "std": 0.02}, "all": {"mean": 0.6, "std": None},
                        "5": {"mean": 0.2, "std": 0.03}, "1": {"mean": 0.1, "std": 0.01}},
        "downstream": {"1": {"mean": 0.2, "std": 0.05}, "50": {"mean": 0.5, "std": 0.04}}}}}
    curves = prompting.few_shot_curves(results, "kws")
    assert curves["deep_prompt"] == [("1", 0.1, 0.01), ("5", 0.2, 0.03), ("10", 0.3, 0.02), ("all", 0.6, 0.0)]
    assert [p[0] for p in curves["downstream"]] == ["1", "50"]
    assert prompting.few_shot_curves(results, "intent") == {}
    fig = viz.few_shot_figure(curves, "kws few-shot", "accuracy")
    assert [t.name for t in fig.data] == ["deep_prompt", "downstream"]
    assert list(fig.data[0].x) == ["1", "5", "10", "all"]
    assert list(fig.data[0].error_y.array) == [0.01, 0.03, 0.02, 0.0]
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.title.text == "accuracy"
    # downstream's n=50 sits before `all` although the first line has no n=50
    assert list(fig.layout.xaxis.categoryarray) == ["1", "5", "10", "50", "all"]
    # lines in method-name order whatever the results' order, so colours match across figures
    flipped = viz.few_shot_figure(dict(reversed(list(curves.items()))), "kws few-shot", "accuracy")
    assert [t.name for t in flipped.data] == ["deep_prompt", "downstream"]


def _sleep_and_report(seconds: float) -> int:
    import time

    time.sleep(seconds)
    return os.getpid()


def test_pool_workers_end_with_their_parent(tmp_path):
    """A worker of run_experiments' pool (exit_with_parent) ends when its parent is killed."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import concurrent.futures as cf, multiprocessing as mp, os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from spkit.recipes.prompting import exit_with_parent
        from test_recipes import _sleep_and_report
        if __name__ == "__main__":
            pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"),
                                          initializer=exit_with_parent, initargs=(os.getpid(), 0.1))
            pool.submit(_sleep_and_report, 0.0).result()  # the worker is up
            print([p.pid for p in pool._processes.values()][0], flush=True)
            pool.submit(_sleep_and_report, 120.0)
            time.sleep(120)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            # a zombie (exited, not yet reaped by its new parent) counts as ended
            stat = Path(f"/proc/{worker}/stat")
            if stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z":
                break
            time.sleep(0.2)
        else:
            os.kill(worker, signal.SIGKILL)
            raise AssertionError("the worker outlived its parent by 20 s")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_convergence_figure_plots_validation_by_step_per_recipe(tmp_path):
    """notebook 03's convergence figure: x = epoch x steps per epoch, y in percent, one line per recipe of
    the task; the record is read from the repository when present."""
    from spkit import viz
    from spkit.recipes.prompting import convergence_record

    record = {"runs": [
        {"name": "old", "task": "kws", "seed": 0, "steps_per_epoch": 16,
         "curve": [[1, 0.1, 2.0], [2, 0.2, 1.5]]},
        {"name": "new", "task": "kws", "seed": 0, "steps_per_epoch": 16, "curve": [[1, 0.5, 1.0]]},
        {"name": "new", "task": "intent", "seed": 0, "steps_per_epoch": 8, "curve": [[1, 0.3, 1.0]]}]}
    fig = viz.convergence_figure(record, "kws")
    assert [t.name for t in fig.data] == ["new", "old"]
    assert list(fig.data[1].x) == [16, 32] and list(fig.data[1].y) == pytest.approx([10.0, 20.0])
    assert convergence_record(tmp_path / "missing.json") is None
    (tmp_path / "r.json").write_text(json.dumps(record))
    assert convergence_record(tmp_path / "r.json") == record

"""The main job's stage runner: order, resume, invalidation and failure handling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spkit.errors import UserError
from spkit.pipeline import Stage, StageFailed, execute, plan


def recording_stages(calls: list[str], fail: str | None = None, version: int = 0) -> list[Stage]:
    def runner(name: str):
        def run() -> None:
            calls.append(name)
            if name == fail:
                raise StageFailed(f"{name} broke")
        return run

    return [Stage(n, {"v": version if n == "b" else 0}, runner(n)) for n in ("a", "b", "c")]


def test_runs_in_order_then_resumes(tmp_path: Path):
    calls: list[str] = []
    summary = execute(recording_stages(calls), tmp_path, log=lambda _: None)
    assert calls == ["a", "b", "c"]
    assert all(s["status"] == "done" for s in summary.values())
    calls.clear()
    summary = execute(recording_stages(calls), tmp_path, log=lambda _: None)
    assert calls == []
    assert all(s["status"] == "skipped" for s in summary.values())


def test_changed_parameters_rerun_that_stage_and_later_ones(tmp_path: Path):
    calls: list[str] = []
    execute(recording_stages(calls), tmp_path, log=lambda _: None)
    calls.clear()
    execute(recording_stages(calls, version=1), tmp_path, log=lambda _: None)
    assert calls == ["b", "c"]


def test_failure_stops_and_resume_continues_from_failed_stage(tmp_path: Path):
    calls: list[str] = []
    with pytest.raises(StageFailed, match="b broke"):
        execute(recording_stages(calls, fail="b"), tmp_path, log=lambda _: None)
    assert calls == ["a", "b"]
    calls.clear()
    execute(recording_stages(calls), tmp_path, log=lambda _: None)
    assert calls == ["b", "c"]


def test_plan_orders_synthesis_before_notebooks(tmp_path: Path, monkeypatch):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    for name in ("02_b.ipynb", "01_a.ipynb", "scratch.ipynb"):
        (nbdir / name).write_text("{}")
    monkeypatch.setenv("SPKIT_NOTEBOOKS", str(nbdir))
    stages = plan("smoke", tmp_path / "run", data_root=tmp_path / "data")
    names = [s.name for s in stages]
    assert names == ["synth_kws", "synth_intent", "synth_lid", "synth_asr", "synth_sf", "01_a", "02_b"]
    assert stages[-1].params["corpora"]["kws"].endswith("smoke-seed0/kws")


def test_shipped_model_presets_synthesize_only_the_prompted_tasks_corpora(tmp_path: Path, monkeypatch):
    from spkit.artifacts import TASK_CORPUS
    from spkit.pipeline import corpus_kinds
    from spkit.recipes.prompting import PRESETS

    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    (nbdir / "01_a.ipynb").write_text("{}")
    monkeypatch.setenv("SPKIT_NOTEBOOKS", str(nbdir))
    # the main job prompts spkit-base on KWS, IC, LID and SF: no ASR corpus (neither prompted nor trained on)
    stages = plan("default", tmp_path / "run", data_root=tmp_path / "data")
    assert [s.name for s in stages] == ["synth_kws", "synth_intent", "synth_lid", "synth_sf", "01_a"]
    assert set(stages[-1].params["corpora"]) == {TASK_CORPUS[t] for t in PRESETS["default"].tasks}
    # a run that trains its units and uLM on the corpora, or prompts every task, synthesizes all five
    for preset in ("smoke", "scratch", "full"):
        assert "asr" in corpus_kinds(preset)
    assert "asr" not in [s.name[6:] for s in plan("oracle", tmp_path / "o", data_root=tmp_path / "d")]


def test_unknown_preset(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        plan("huge", tmp_path)


def _notebook(path: Path, parameters: str) -> None:
    cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": parameters, "outputs": []}
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


@pytest.fixture
def task_notebooks(tmp_path: Path, monkeypatch) -> Path:
    """Stand-ins of the notebook sequence's parameters cells, as far as tasks go."""
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _notebook(nbdir / "01_unit_discovery.ipynb", "corpora = {}\nseeds = None")
    _notebook(nbdir / "03_prompt_training.ipynb", "corpora = {}\ntasks = None\nseeds = None")
    _notebook(nbdir / "04_verbalizer_analysis.ipynb", 'corpora = {}\ntask = "kws"')
    _notebook(nbdir / "05_attention_visualization.ipynb", 'corpora = {}\ntask = "kws"')
    _notebook(nbdir / "06_audio_demo.ipynb", "corpora = {}\ntask = None")
    monkeypatch.setenv("SPKIT_NOTEBOOKS", str(nbdir))
    return nbdir


def test_given_corpora_narrow_the_tasks_and_every_notebook_follows(tmp_path: Path, task_notebooks):
    lines: list[str] = []
    corpora = {"intent": str(tmp_path), "sf": str(tmp_path)}
    stages = {s.name: s for s in plan("smoke", tmp_path / "run", corpora=corpora, log=lines.append)}
    assert lines == ["[spkit run] tasks: intent, sf; skipped: kws (no kws corpus), lid (no lid corpus), asr "
                     "(no asr corpus) (give --corpus kws=DIR --corpus lid=DIR --corpus asr=DIR to run them)"]
    assert stages["03_prompt_training"].params["tasks"] == ["intent", "sf"]
    assert stages["04_verbalizer_analysis"].params["task"] == "intent"
    assert stages["05_attention_visualization"].params["task"] == "intent"
    assert "task" not in stages["06_audio_demo"].params  # it picks a task of the run's prompts itself
    assert "tasks" not in stages["01_unit_discovery"].params
    # only a sequence task: the verbalizer analysis (label classes) has nothing to show and is left out
    lines.clear()
    stages = {s.name: s for s in plan("smoke", tmp_path / "run", corpora={"sf": str(tmp_path)},
                                      log=lines.append)}
    assert "04_verbalizer_analysis" not in stages
    assert stages["05_attention_visualization"].params["task"] == "sf"
    assert len(lines) == 2 and "04_verbalizer_analysis: left out" in lines[1]


def test_every_corpus_given_changes_no_stage(tmp_path: Path, task_notebooks):
    """With every task's corpus the stages (and their resume keys) are what they were before task lists."""
    corpora = {k: str(tmp_path) for k in ("kws", "intent", "lid", "asr", "sf")}
    lines: list[str] = []
    stages = plan("smoke", tmp_path / "run", corpora=corpora, log=lines.append)
    assert lines == []
    for s in stages:
        assert "tasks" not in s.params and "task" not in s.params


def test_explicit_tasks_need_their_corpora(tmp_path: Path, task_notebooks):
    with pytest.raises(UserError, match=r"--param tasks asks for lid but the run has no lid corpus: give "
                                        r"--corpus lid=DIR"):
        plan("smoke", tmp_path / "run", corpora={"kws": str(tmp_path)}, params={"tasks": "kws,lid"})
    with pytest.raises(UserError, match="unknown task"):
        plan("smoke", tmp_path / "run", corpora={"kws": str(tmp_path)}, params={"tasks": ["kwz"]})
    with pytest.raises(UserError, match="none of the paper preset's tasks"):
        plan("paper", tmp_path / "run", corpora={"lid": str(tmp_path)})
    with pytest.raises(UserError, match="--param task=intent: not a task of this run"):
        plan("smoke", tmp_path / "run", corpora={"kws": str(tmp_path)}, params={"task": "intent"})
    assert not (tmp_path / "run").exists()
    # a preset that synthesizes only its prompted tasks' corpora synthesizes the explicit tasks' ones
    stages = plan("default", tmp_path / "run", data_root=tmp_path / "data", params={"tasks": "kws,asr"})
    assert [s.name for s in stages][:2] == ["synth_kws", "synth_asr"]
    assert stages[2].params["tasks"] == ["kws", "asr"]

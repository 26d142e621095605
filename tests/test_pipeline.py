"""The main job's stage runner: order, resume, invalidation and failure handling."""

from __future__ import annotations

from pathlib import Path

import pytest

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

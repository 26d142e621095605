"""Session-wide fixtures shared by test files: the smoke run of the main job (several minutes on 2 cores),
made once per test session and reused by tests/test_notebooks.py and tests/test_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> tuple[Path, dict]:
    """The whole main job at the smoke preset (corpora synthesized, notebooks executed) in a temp dir."""
    from spkit.pipeline import execute, plan

    root = tmp_path_factory.mktemp("smoke_run")
    stages = plan("smoke", root / "run", data_root=root / "data")
    summary = execute(stages, root / "run", log=lambda _: None)
    return root / "run", summary

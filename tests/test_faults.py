"""Fault injection: the main job and ``spkit pretrain-base`` killed with SIGKILL at points spread over their
stages (power loss, a closed laptop, CI's timeout), then rerun, end with the results of an uninterrupted run
to the digit and leave no partial file (an atomic write's temporary, a truncated checkpoint, half-written
JSON) anywhere in their folders. A damaged ``results.json`` or ``prompt.pt`` is a one-line error naming it.

The kill points are chosen by watching the run's own files (stage marks, checkpoints, unit files), not by
sleeping; every process of the job dies at once, the notebook kernels (their own sessions) included, as
they would at a power loss. ``pytest -s`` shows which points were hit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 900  # one attempt of the smoke run (about 4-5 minutes on 2 busy cores)

# Fields that measure the machine, not the result: left out of the comparison. Timings, and peak_mem_mb: the
# bytes of tensors allocated during a training run, which in a run resumed mid-way leave out the optimizer
# state loaded from its checkpoint (measured: 5.140 against 5.145 MB for a resumed smoke prompt run).
VOLATILE = {"train_s", "feature_s", "wall_seconds", "seconds", "peak_mem_mb", "cpu_seconds",
            "tokens_per_second", "elapsed_s", "time_s", "predict_ms"}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the job's process group and every descendant (papermill kernels run in their own sessions),
    all at once: nothing gets to clean up, as at a power loss."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    for p in kids:  # stop first, so no process reacts to another's death before it dies itself
        try:
            p.suspend()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in kids:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(kids, timeout=30)


@dataclass
class KillPoint:
    """Kill the job once ``ready(t0)`` holds (``t0``: when this attempt started)."""

    name: str
    ready: Callable[[float], bool]


def newer(paths, t0: float) -> list[Path]:
    out = []
    for p in paths:
        try:
            if p.stat().st_mtime >= t0:
                out.append(p)
        except FileNotFoundError:
            pass
    return out


def attempt(argv: list[str], log: Path, point: KillPoint | None, timeout: float = RUN_TIMEOUT_S
            ) -> tuple[bool, int | None]:
    """Run ``python -m spkit ARGV`` until ``point`` is ready (then SIGKILL it: returns ``(True, None)``) or
    it exits (``(False, returncode)``)."""
    t0 = time.time() - 0.01
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n==== {' '.join(argv)} (kill point: {point.name if point else 'none'})\n")
        out.flush()
        proc = subprocess.Popen([sys.executable, "-m", "spkit", *argv], stdout=out, stderr=subprocess.STDOUT,
                                env=_env(), cwd=REPO, start_new_session=True)
        try:
            while proc.poll() is None:
                if time.time() - t0 > timeout:
                    raise AssertionError(f"{argv}: no exit and no kill point in {timeout} s; see {log}")
                if point is not None and point.ready(t0):
                    kill_tree(proc)
                    out.write(f"==== killed at {point.name}\n")
                    return True, None
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                kill_tree(proc)
    return False, proc.returncode


def run_with_kills(argv: list[str], points: list[KillPoint], log: Path) -> list[str]:
    """Kill the job at each point in turn (each rerun resumes the previous one), then let it finish.
    Returns the points hit (a point the job got past before it was ready is missed, not hit)."""
    hit = []
    for point in points:
        killed, rc = attempt(argv, log, point)
        if killed:
            hit.append(point.name)
            continue
        assert rc == 0, f"the job failed (exit {rc}) while waiting for {point.name}: {_tail(log)}"
        return hit
    killed, rc = attempt(argv, log, None)
    assert rc == 0, f"the resumed job failed (exit {rc}): {_tail(log)}"
    return hit


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-4000:]


# ------------------------------------------------------------------------------------- partial files
def partial_files(root: Path) -> list[str]:
    """Every file under ``root`` that an interrupted write could have left: temporaries of atomic writes,
    and JSON, JSON lines, notebooks, torch checkpoints, numpy arrays and k-means models that do not load."""
    import joblib
    import numpy as np
    import torch

    bad = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        name = p.name
        rel = str(p.relative_to(root))
        if ".tmp" in name or name.endswith((".part", ".partial", "~")):
            bad.append(f"{rel}: a temporary file")
            continue
        if name.endswith(".log") and "shards" in p.parts:
            bad.append(f"{rel}: a synthesis worker's log of an unfinished shard")
            continue
        try:
            if name.endswith((".json", ".ipynb")):
                json.loads(p.read_text(encoding="utf-8"))
            elif name.endswith(".jsonl"):
                for line in p.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        json.loads(line)
            elif name.endswith((".pt", ".pth")):
                torch.load(p, map_location="cpu", weights_only=False)
            elif name.endswith(".npy"):
                np.load(p, allow_pickle=False)
            elif name.endswith(".bin"):
                joblib.load(p)
            elif name.endswith((".html", ".md", ".txt", ".tsv", ".csv")):
                text = p.read_text(encoding="utf-8")
                if name.endswith(".html") and text.strip() and "</html>" not in text[-4096:].lower():
                    bad.append(f"{rel}: HTML without its end")
        except Exception as e:  # any failure to load is what this looks for
            bad.append(f"{rel}: does not load ({type(e).__name__}: {str(e)[:120]})")
    return bad


def without_volatile(obj: Any, replace: dict[str, str]) -> Any:
    """``obj`` without the timing/memory fields, with the run-specific paths replaced."""
    if isinstance(obj, dict):
        return {k: without_volatile(v, replace) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, tuple):
        return tuple(without_volatile(v, replace) for v in obj)
    if isinstance(obj, list):
        return [without_volatile(v, replace) for v in obj]
    if isinstance(obj, str):
        for a, b in replace.items():
            obj = obj.replace(a, b)
    return obj


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


# ------------------------------------------------------------------------------------- the main job
def smoke_kill_points(run: Path, data: Path) -> list[KillPoint]:
    marks = run / ".stages"
    kws = data / "smoke-seed0" / "kws"

    def not_done(stage: str) -> bool:
        return not (marks / f"{stage}.json").exists()

    def synthesis(t0: float) -> bool:  # clips of the first corpus being written by the synthesis workers
        return not_done("synth_kws") and len(newer(kws.rglob("*.wav"), t0)) >= 20

    def quantization(t0: float) -> bool:  # notebook 01 after k-means: the corpora being quantized
        return not_done("01_unit_discovery") and bool(newer((run / "units").glob("*/train.txt"), t0))

    def ulm_training(t0: float) -> bool:  # notebook 02: a mid-training checkpoint of the uLM
        return (not_done("02_unit_lm") and not (run / "ulm" / "report.json").exists()
                and bool(newer([run / "ulm" / "checkpoint_last.pt"], t0)))

    def prompt_run(t0: float) -> bool:  # notebook 03: runs done, one mid-training (an epoch's state saved)
        return (not_done("03_prompt_training") and (run / "results.json").exists()
                and len(newer((run / "prompts").glob("*/*/seed*/train_state.pt"), t0)) >= 3)

    def analysis(t0: float) -> bool:  # notebook 05: a prompt of the analysis notebooks being trained/read
        return not_done("05_attention_visualization") and bool(
            newer([run / "notebooks" / "05_attention_visualization.ipynb"], t0))

    def report(t0: float) -> bool:  # after the last notebook: the report's notebook HTML pages being written
        return not not_done("06_audio_demo") and bool(newer((run / "notebooks").glob("*.html"), t0))

    return [KillPoint("synthesis (synth_kws)", synthesis), KillPoint("quantization (01)", quantization),
            KillPoint("uLM training (02)", ulm_training), KillPoint("prompt run (03)", prompt_run),
            KillPoint("analysis prompts (05)", analysis), KillPoint("report", report)]


def test_killed_smoke_run_resumes_to_the_uninterrupted_results(tmp_path, smoke_run):
    ref_run, _ = smoke_run  # the uninterrupted smoke run (tests/conftest.py), in its own folders
    run, data, log = tmp_path / "run", tmp_path / "data", tmp_path / "kills.log"
    argv = ["run", "--preset", "smoke", "--out", str(run), "--data-root", str(data)]
    points = smoke_kill_points(run, data)
    t0 = time.time()
    hit = run_with_kills(argv, points, log)
    print(f"\n[faults] spkit run --preset smoke: killed at {len(hit)} of {len(points)} points "
          f"({', '.join(hit)}), resumed each time; {time.time() - t0:.0f} s in all")
    assert len(hit) >= 5, f"only {hit} of {[p.name for p in points]} were hit: {_tail(log)}"
    assert not partial_files(run), partial_files(run)
    assert not partial_files(data), partial_files(data)
    replace = {str(ref_run.parent): "ROOT", str(run.parent): "ROOT", str(data): "ROOT/data"}
    got = without_volatile(json.loads((run / "results.json").read_text()), replace)
    want = without_volatile(json.loads((ref_run / "results.json").read_text()), replace)
    assert not differences(got, want), "\n".join(differences(got, want)[:40])
    assert (run / "index.html").exists() and len(list((run / "notebooks").glob("*.html"))) == 6


# ------------------------------------------------------------------------------------- pretrain-base
def test_killed_pretrain_base_resumes_to_the_uninterrupted_build(tmp_path):
    import torch

    log = tmp_path / "kills.log"

    def argv(name: str, resume: bool) -> list[str]:
        return ["pretrain-base", "--out", str(tmp_path / name / "base"), "--preset", "smoke",
                "--data-root", str(tmp_path / name / "data"), *(["--resume"] if resume else [])]

    killed, rc = attempt(argv("ref", False), log, None)
    assert rc == 0, _tail(log)
    out, work = tmp_path / "k" / "base", tmp_path / "k" / "base.work"

    def done(stage: str) -> bool:
        try:
            return stage in json.loads((work / "state.json").read_text())["stages"]
        except (FileNotFoundError, ValueError):
            return False

    def synthesis(t0: float) -> bool:  # the pretraining corpus's clips being written
        clips = [p for p in (tmp_path / "k" / "data").rglob("*") if p.suffix in (".flac", ".wav")]
        return not done("corpus") and len(newer(clips, t0)) >= 10

    def between(before: str, stage: str) -> Callable[[float], bool]:  # just into ``stage``
        return lambda t0: done(before) and not done(stage)

    points = [KillPoint("corpus synthesis", synthesis), KillPoint("pack", between("corpus", "pack")),
              KillPoint("HuBERT", between("pack", "hubert1")),
              KillPoint("select", between("hubert", "select")),
              KillPoint("k-means", between("select", "kmeans")),
              KillPoint("units", between("kmeans", "units")),
              KillPoint("uLM", between("units", "ulm")), KillPoint("export", between("ulm", "export"))]
    hit = []
    for point in points:
        killed, rc = attempt(argv("k", (work / "state.json").exists()), log, point)
        if killed:
            hit.append(point.name)
            continue
        assert rc == 0, _tail(log)
        break
    else:
        killed, rc = attempt(argv("k", True), log, None)
        assert rc == 0, _tail(log)
    print(f"\n[faults] spkit pretrain-base --preset smoke: killed at {len(hit)} of {len(points)} points "
          f"({', '.join(hit)}), resumed with --resume each time")
    assert len(hit) >= 6, f"only {hit} were hit: {_tail(log)}"
    ref = tmp_path / "ref" / "base"
    replace = {str(tmp_path / "ref"): "ROOT", str(tmp_path / "k"): "ROOT"}
    for folder in (tmp_path / "k" / "base", work, tmp_path / "k" / "data"):
        assert not partial_files(folder), partial_files(folder)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == sorted(
        str(p.relative_to(ref)) for p in ref.rglob("*"))
    for p in sorted([*ref.rglob("*.pt"), *ref.parent.joinpath("base.work").rglob("*.pt")]):
        other = tmp_path / "k" / p.relative_to(tmp_path / "ref")
        a = torch.load(p, map_location="cpu", weights_only=False)
        b = torch.load(other, map_location="cpu", weights_only=False)
        diff = tensor_differences(without_volatile(a, replace), without_volatile(b, replace))
        assert not diff, (p.relative_to(tmp_path / "ref"), diff[:5])
    for name in ("spkit-base.json", "curves.json"):
        a, b = (without_volatile(json.loads((d / name).read_text()), replace) for d in (ref, out))
        assert not differences(a, b), (name, differences(a, b)[:20])
    a, b = (without_volatile(json.loads((d / "state.json").read_text()), replace)
            for d in (ref.parent / "base.work", work))
    assert not differences(a, b), differences(a, b)[:20]


def tensor_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two loaded checkpoints differ (tensors bit for bit; timing fields left out)."""
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return [] if a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b) else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        out = [f"{path}/{k}: only in one" for k in sorted(map(str, set(a) ^ set(b)))]
        for k in sorted(set(a) & set(b), key=str):
            out += tensor_differences(a[k], b[k], f"{path}/{k}")
        return out if keys else []
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in tensor_differences(x, y, f"{path}[{i}]")]
    return differences(a, b, path)


# ------------------------------------------------------------------------------------- damaged files
def test_damaged_results_or_prompt_is_a_one_line_error_naming_it(tmp_path, smoke_run):
    import shutil

    ref_run, _ = smoke_run
    run = tmp_path / "run"
    shutil.copytree(ref_run, run, ignore=shutil.ignore_patterns("feature_cache", "cache", "*.ipynb"))
    base = ["run", "--preset", "smoke", "--out", str(run), "--data-root", str(tmp_path / "data")]

    def spkit(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "spkit", *argv], capture_output=True, text=True,
                              env=_env(), cwd=REPO, timeout=300)

    def one_line(res: subprocess.CompletedProcess, needle: str) -> None:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "Warning" not in ln]
        assert res.returncode == 2 and "Traceback" not in res.stderr and len(lines) == 1, res.stderr[-2000:]
        assert needle in lines[0], lines[0]

    prompt = sorted(run.glob("prompts/kws/deep_prompt/seed*/prompt.pt"))[0]
    good = prompt.read_bytes()
    prompt.write_bytes(good[: len(good) // 2])  # truncated
    one_line(spkit(*base), f"{prompt}: not a readable prompt file")
    one_line(spkit("predict", "--run", str(run), "--task", "kws", "--prompt", str(prompt), str(prompt)),
             str(prompt))
    prompt.write_bytes(good)
    results = run / "results.json"
    results.write_text(results.read_text()[:200])  # half-written
    one_line(spkit(*base), f"{results}: not valid JSON")
    one_line(spkit("predict", "--run", str(run), "--task", "kws", str(prompt)), str(results))
    assert not (tmp_path / "data").exists()  # refused before anything ran

"""Notebook 06 in a real browser: JupyterLab (token, 127.0.0.1) + Debian's Chromium driven by Playwright;
the demo's widget logic (:mod:`spkit.demo`) driven from Python on the same smoke run; and the run report
(``RUN/index.html``) in the same browser: its first screen draws the headline figure and the verdict, a run
with results at the majority-class rate or stopped at their cap shows those warnings, and a run without them
shows none (small synthetic records, tests/report_records.py; and the smoke run's own report).

``docs/report.png`` is the first screen of a real run's report (for now a smoke run; the default run's
replaces it)::

    .venv/bin/python scripts/report_screenshot.py runs/default docs/report.png

or, from this test on the session's smoke run (or ``$SPKIT_DEMO_RUN``),
``SPKIT_REPORT_SCREENSHOT=docs/report.png pytest -p no:hydra_pytest tests/test_browser.py -k smoke_report``.

Opens a copy of the demo notebook whose parameters point at the session's smoke run, waits for the kernel
to be idle, runs all cells from the Run menu, and checks that the widgets (a dropdown, an ``<audio>``
player), a plotly figure and the prediction render, that selecting another clip changes the prediction,
and that "hear the units" adds the resynthesized player. A screenshot goes to the test's temp folder, and
also to ``$SPKIT_DEMO_SCREENSHOT`` when set (how ``docs/demo.png`` was made).

The browser test is skipped only when ``/usr/bin/chromium`` is absent (``scripts/ensure_chromium.sh``
installs it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "06_audio_demo.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="no /usr/bin/chromium (run scripts/ensure_chromium.sh)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parameterized_copy(src: Path, dst: Path, **params: object) -> Path:
    """Copy a notebook, rewriting ``name = literal`` lines of its ``parameters`` cell (outputs stay empty)."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    for name, value in params.items():
        pattern = re.compile(rf"^{name}\s*=")
        idx = [i for i, line in enumerate(lines) if pattern.match(line)]
        assert idx, f"{src}: no parameter {name!r}"
        lines[idx[0]] = f"{name} = {value!r}"
    cell["source"] = "\n".join(lines)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return dst


def wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer {url} in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server and its kernels (its own process group, started by this test)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def demo_run(request) -> Path:
    """The session's smoke run, or an existing run folder named by ``$SPKIT_DEMO_RUN`` (development loops:
    it must hold units, uLM and prompts, e.g. ``spkit run --preset smoke --out RUN``)."""
    given = os.environ.get("SPKIT_DEMO_RUN")
    if given:
        return Path(given).resolve()
    run, _ = request.getfixturevalue("smoke_run")
    return run


@pytest.fixture(scope="module")
def lab(demo_run, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server whose root holds the demo notebook, parameterized for the smoke run.

    Yields ``(base URL with token, root dir)``; the server is stopped at teardown, also on failure.
    """
    run = demo_run
    root = tmp_path_factory.mktemp("lab")
    parameterized_copy(NOTEBOOK, root / "work" / NOTEBOOK.name, preset="smoke", run_dir=str(run), n_clips=12)
    port, token = free_port(), secrets.token_hex(16)
    # Private runtime/settings/workspace folders: no state leaks between runs or into the user's setup.
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(root / "ws")}
    # No "get notified about Jupyter news?" pop-up over the demo (it would also sit in the screenshot).
    notif = root / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notif.parent.mkdir(parents=True)
    notif.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    log = root / "lab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root / 'work'}",
             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_server(f"{base}/api/status?token={token}", proc, log)
        yield f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", root
    finally:
        stop(proc)


@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_demo_notebook_in_chromium(lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, _ = lab
    shot = tmp_path / "demo.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url)
            # The kernel status in the status bar ("Python 3 (ipykernel) | Idle") says the kernel is ready.
            expect(page.locator("#jp-main-statusbar").get_by_text("Idle")).to_be_visible(timeout=90_000)
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

            prediction = page.locator(".spkit-prediction")
            expect(prediction).to_contain_text("prediction:", timeout=120_000)
            clip = page.locator(".spkit-clip select")
            expect(clip).to_be_visible()
            expect(page.locator(".spkit-player audio")).to_have_count(2)  # original + resynthesized
            bars = page.locator(".spkit-bars .js-plotly-plot")
            units = page.locator(".spkit-units .js-plotly-plot")
            expect(bars).to_be_visible(timeout=30_000)
            expect(units).to_be_visible(timeout=30_000)

            before = prediction.inner_text()
            options = clip.locator("option").all_inner_texts()
            assert len(options) >= 2, options
            clip.select_option(index=1)
            new_uid = re.split(r"\s\(", options[1])[0]  # "uid (label)"; the browser may use a nbsp
            expect(prediction).to_contain_text(new_uid, timeout=30_000)
            after = prediction.inner_text()
            assert after != before and "prediction:" in after
            # the update replaced the players: only the original until "hear the units" is pressed
            expect(page.locator(".spkit-player audio")).to_have_count(1, timeout=10_000)
            page.locator(".spkit-hear").click()
            expect(page.locator(".spkit-player audio")).to_have_count(2, timeout=30_000)
            # the bars and the units figure were replaced: their titles name the new clip
            expect(bars).to_contain_text(new_uid, timeout=30_000)
            expect(units).to_contain_text(new_uid)

            page.keyboard.press("Control+b")  # hide the file browser: more room for the demo
            page.locator(".spkit-task").scroll_into_view_if_needed()
            page.locator(".widget-toggle-buttons").first.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    target = os.environ.get("SPKIT_DEMO_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(shot.read_bytes())


# ------------------------------------------------------------------------------------------------
# The same widgets without a browser (fast; they also run where Chromium is missing)
# ------------------------------------------------------------------------------------------------

def test_prompt_catalog_lists_the_runs_prompts(demo_run):
    import torch

    from spkit.demo import prompt_catalog

    run = demo_run
    cat = prompt_catalog(run)
    files = sorted(run.glob("prompts/*/*/seed*/prompt.pt"))
    assert len(cat) == len(files) > 0 and sorted(e.path for e in cat) == files
    for e in cat:  # task/method/seed from the path, the verbalizer from inside the file
        assert e.path == run / "prompts" / e.task / e.method / f"seed{e.seed}" / "prompt.pt"
        assert e.verbalizer == torch.load(e.path, weights_only=True)["verbalizer"]["kind"]
    assert ("kws", "deep_prompt", "frequency") in {(e.task, e.method, e.verbalizer) for e in cat}


def test_upload_any_rate_and_stereo(tmp_path):
    import io

    import numpy as np
    import soundfile as sf

    from spkit.audio import AudioError
    from spkit.demo import wave_from_upload

    t = np.arange(44_100) / 44_100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, stereo, 44_100, format="WAV")
    wave = wave_from_upload(memoryview(buf.getvalue()), "tone.wav")
    assert wave.shape == (16_000,) and abs(float(wave.abs().max()) - 0.5) < 0.05  # 1 s, downmixed
    with pytest.raises(AudioError, match=r"notes\.wav"):
        wave_from_upload(b"not audio", "notes.wav")
    # a recording with 1 s of silence before and 0.5 s after the tone: trimmed to the tone + 0.2 s each side
    mono = np.concatenate([np.zeros(16_000), 0.5 * np.sin(2 * np.pi * 440 * t[:16_000] * 44_100 / 16_000),
                           np.zeros(8_000)]).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, mono, 16_000, format="WAV")
    trimmed = wave_from_upload(buf.getvalue(), "late.wav")
    assert abs(trimmed.numel() - (16_000 + 2 * 3_200)) <= 480  # within 3 librosa frames of the tone's edges
    assert float(trimmed[:2_700].abs().max()) == 0.0 and float(trimmed[-2_700:].abs().max()) == 0.0
    assert float(trimmed[3_700:-3_700].abs().max()) > 0.45  # the tone itself is kept whole
    assert wave_from_upload(buf.getvalue(), "late.wav", trim=False).numel() == 40_000


def test_app_updates_on_widget_changes(demo_run):
    from spkit.demo import DemoApp
    from spkit.vocoder import load_run_vocoder

    run = demo_run
    app = DemoApp(run, task="kws", vocoder=load_run_vocoder(run, progress=False), n_clips=6)
    first = app.update()
    assert first is not None and first.entry.task == "kws" and first.label in first.scores
    assert abs(sum(first.scores.values()) - 1) < 1e-4
    assert first.frame_units and sum(first.durations) == len(first.frame_units)
    assert first.name in app.prediction.value and "prediction:" in app.prediction.value
    assert first.name in app.bars_view().layout.title.text
    for out in (app.bars, app.figure):  # one plotly figure each, set from the kernel (no capture)
        assert len(out.outputs) == 1 and "application/vnd.plotly.v1+json" in out.outputs[0]["data"]
    assert first.name in app.units_view().layout.title.text

    app.clip.value = 1  # another clip: the observer re-predicts
    assert app.last is not first and app.last.name == app.clips[1].uid
    assert app.clips[1].uid in app.prediction.value and app.clips[1].uid in app.bars_view().layout.title.text

    wave = app.play_units()  # hear the units: a second player with the resynthesized clip
    assert wave.shape == (len(app.last.frame_units) * 320,)
    assert len(app.player.children) == 2

    other = [m for m in app.method.options if m != app.method.value]
    app.method.value = other[0]  # another prompt method: same clip, another prompt file
    assert app.last.entry.method == other[0] and app.last.name == app.clips[1].uid
    assert app.verbalizer.value in app.verbalizer.options and app.seed.value in app.seed.options

    app.text.value = "go left"
    app.speak.click()  # synthesize with an unseen voice
    assert app.source.value == "synthesize" and "go left" in app.last.name

    # an upload (44.1 kHz stereo) switches the source and is analysed at 16 kHz mono
    import io
    from datetime import datetime

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    noise = 0.01 * np.random.default_rng(0).standard_normal((44_100, 2)).astype(np.float32)
    sf.write(buf, noise, 44_100, format="WAV")
    item = {"name": "mine.wav", "type": "audio/wav", "size": buf.tell(),
            "content": memoryview(buf.getvalue()), "last_modified": datetime(2024, 1, 1)}
    app.upload.value = (item,)
    assert app.source.value == "upload" and app.last.name == "mine.wav" and len(app.last.wave) == 16_000
    bad = {**item, "name": "broken.wav", "content": memoryview(b"not audio")}
    app.upload.value = (bad,)
    assert "broken.wav" in app.prediction.value and app.last.name == "mine.wav"  # error shown, last kept


# ------------------------------------------------------------------------------------------------
# The run report (index.html) in Chromium: what the run shows first, and its warnings
# ------------------------------------------------------------------------------------------------

REPORT_VIEWPORT = {"width": 1280, "height": 1000}


def open_report(browser, run: Path):
    """A page at 1280 px showing ``run``'s index.html once the headline figure is drawn."""
    page = browser.new_page(viewport=REPORT_VIEWPORT)
    page.goto((run / "index.html").as_uri())
    page.wait_for_selector("#headline-figure .main-svg", timeout=30_000)
    return page


def check_report_layout(page) -> None:
    """The headline figure and the verdict on the first screen, in that order; headings unique; every table
    inside the page at 1280 px (no horizontal scrolling)."""
    fig = page.locator("#headline-figure").bounding_box()
    verdict = page.locator(".verdict").bounding_box()
    assert fig["y"] < verdict["y"] and verdict["y"] + min(verdict["height"], 60) < REPORT_VIEWPORT["height"]
    assert page.locator("#headline-figure .barlayer .point").count() >= 3  # bars drawn, not an empty svg
    headings = page.locator("h1, h2, h3, h4").all_inner_texts()
    assert len(headings) == len(set(headings)), headings
    widths = page.evaluate("Array.from(document.querySelectorAll('table'), "
                           "t => t.getBoundingClientRect().right)")
    assert widths and max(widths) <= REPORT_VIEWPORT["width"], widths
    assert page.evaluate("document.documentElement.scrollWidth") <= REPORT_VIEWPORT["width"]


@pytest.mark.browser
@needs_chromium
def test_report_in_chromium(tmp_path):
    from playwright.sync_api import expect, sync_playwright
    from report_records import meaningless_runs, sound_runs, write_run

    from spkit.report import finalize_run

    summary = {"preset": "synthetic", "stages": {"03_prompt_training": {"status": "done", "seconds": 1.0}},
               "seconds": 1.0}
    bad, good = tmp_path / "bad", tmp_path / "good"
    write_run(bad, meaningless_runs())
    write_run(good, sound_runs())
    for run in (bad, good):
        finalize_run(run, summary)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = open_report(browser, bad)
            check_report_layout(page)
            # 4 + 3 + 3 bars (KWS with fine-tuning, IC, LID); a chance and a majority line per task
            expect(page.locator("#headline-figure .barlayer .point")).to_have_count(10)
            expect(page.locator("#headline-figure .shapelayer path")).to_have_count(6)
            expect(page.locator("#headline-figure")).to_contain_text("majority 19.1")
            warnings = page.locator("#warnings")
            expect(warnings).to_be_visible()
            expect(warnings.locator("li.warning")).to_have_count(4)
            near = warnings.locator("li[data-kind=near_chance]")
            expect(near).to_contain_text("KWS deep_prompt_random_lm 19.1 % (at the majority class rate "
                                         "19.1 %)")
            expect(near).to_contain_text("IC deep_prompt 0.0 % (below")
            capped = warnings.locator("li[data-kind=capped]")
            expect(capped).to_contain_text("KWS deep_prompt (seeds 0, 1, 2 of 3 at cap 4)")
            expect(capped).to_contain_text("PRESET=full")
            page.screenshot(path=str(tmp_path / "bad.png"))

            page = open_report(browser, good)
            check_report_layout(page)
            expect(page.locator("#headline-figure .barlayer .point")).to_have_count(7)
            expect(page.locator(".warning")).to_have_count(0)
            expect(page.locator("#warnings")).to_have_count(0)
            expect(page.locator(".checks-ok")).to_contain_text("No warnings")
            page.screenshot(path=str(tmp_path / "good.png"))
        finally:
            browser.close()
    assert (tmp_path / "bad.png").stat().st_size > 10_000


@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_smoke_report_in_chromium(demo_run, tmp_path):
    """The smoke run's own report: one seed and two epochs, so it warns (single seed, capped runs); its first
    screen is what ``docs/report.png`` shows (``$SPKIT_REPORT_SCREENSHOT`` saves it there)."""
    from playwright.sync_api import expect, sync_playwright

    from spkit.report import finalize_run

    finalize_run(demo_run)
    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = open_report(browser, demo_run)
            check_report_layout(page)
            expect(page.locator("li.warning[data-kind=single_seed]")).to_contain_text("KWS deep_prompt")
            expect(page.locator("li.warning[data-kind=capped]")).to_be_visible()
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    target = os.environ.get("SPKIT_REPORT_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(shot.read_bytes())

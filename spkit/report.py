"""The run report: PNG copies of every figure (one Chromium session for all) and ``index.html``
linking the executed notebooks, figures, ``results.md``/``results.json`` and unit/uLM reports."""

from __future__ import annotations

import html
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from spkit.features.tiny_hubert import TARGET_SENTENCES
from spkit.io import read_json, write_json, write_text
from spkit.layout import RunLayout
from spkit.prompt.results import load_results, update_results
from spkit.prompt.verdict import (
    class_rates_from_units,
    missing_class_rates,
    run_warnings,
    verdict_sentences,
    warnings_intro,
)
from spkit.units.oracle import ORACLE_KIND, ORACLE_LABEL

log = logging.getLogger(__name__)


def chromium_available() -> bool:
    """kaleido (plotly's PNG export) drives a Chromium; Debian's lives at /usr/bin/chromium."""
    return shutil.which("chromium") is not None or Path("/usr/bin/chromium").exists()


def export_pngs(figures: str | os.PathLike, force: bool = False) -> list[Path]:
    """Write ``name.png`` beside every ``name.plotly.json`` in ``figures`` (missing or stale ones
    only, unless ``force``). Returns the written PNGs; nothing when no Chromium is installed."""
    import plotly.io as pio

    folder = Path(figures)
    todo = []
    for js in sorted(folder.glob("*.plotly.json")):
        png = js.with_name(js.name.removesuffix(".plotly.json") + ".png")
        if force or not png.exists() or png.stat().st_mtime < js.stat().st_mtime:
            todo.append((js, png))
    if not todo or not chromium_available():
        return []
    figs = [pio.from_json(js.read_text(encoding="utf-8")) for js, _ in todo]
    tmps = [png.with_name(f".{png.name}.tmp.png") for _, png in todo]
    try:
        pio.write_images(figs, [str(t) for t in tmps])
        for tmp, (_, png) in zip(tmps, todo):
            os.replace(tmp, png)
    except Exception as e:  # the HTML figures are the reference output; PNGs are a convenience
        log.warning("PNG export failed (%s); the HTML figures are complete", e)
        return []
    finally:
        for t in tmps:
            t.unlink(missing_ok=True)
    return [png for _, png in todo]


def notebook_html(nb_path: Path) -> Path | None:
    """Convert an executed notebook to HTML beside it (plotly outputs show as links to figures/)."""
    try:
        import nbformat
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nbformat.read(nb_path, as_version=4))
        return write_text(nb_path.with_suffix(".html"), body)
    except Exception as e:
        log.warning("could not convert %s to HTML (%s)", nb_path, e)
        return None


def _rel(path: Path, root: Path) -> str:
    return html.escape(str(path.relative_to(root)))


HEADLINE = "headline"
"""``RUN/figures/headline.{html,plotly.json,png}``: the report's first figure (see
:func:`write_headline_figure`)."""

STYLE = ("body{font-family:sans-serif;max-width:1180px;margin:1.5em auto;padding:0 12px;line-height:1.4}"
         "table{border-collapse:collapse;font-size:13px;max-width:100%;margin:6px 0}"
         "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}"
         ".figs{display:flex;flex-wrap:wrap;gap:12px}.fig{border:1px solid #eee;padding:6px}"
         ".oracle{background:#fff3cd;padding:8px}.verdict{font-size:16px}"
         ".warnings{background:#fdecea;border-left:5px solid #d93025;padding:6px 12px}"
         ".warning{margin:6px 0}.checks-ok{background:#e6f4ea;border-left:5px solid #188038;padding:6px 12px}"
         "#headline-figure{width:100%;min-height:450px}")


def backfill_class_rates(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Add ``class_rates`` to an older ``results.json`` that lacks them, from the run's unit files (the
    report's chance and majority lines and warnings need them); returns the results (None: no results)."""
    layout = RunLayout.at(run_dir)
    if not layout.results_json.exists():
        return None
    results = load_results(layout.results_json)
    missing = missing_class_rates(results)
    if missing:
        try:
            rates = class_rates_from_units(layout.root, missing)
        except Exception as e:  # unreadable unit files: the report still builds, without those lines
            log.warning("could not read the class rates of %s from the unit files (%s)", missing, e)
            rates = {}
        if rates:
            results = update_results(layout.results_json, [], class_rates=rates,
                                     figure=results_md_figure(layout))
    return results


def results_md_figure(layout: RunLayout) -> str | None:
    """The headline figure as results.md links it (relative to the run folder): the PNG where one was
    exported, else the HTML page; None before the report made it."""
    for ext in (".png", ".html"):
        if (layout.figures / f"{HEADLINE}{ext}").exists():
            return f"{layout.figures.name}/{HEADLINE}{ext}"
    return None


def write_headline_figure(run_dir: str | os.PathLike, results: dict[str, Any] | None = None) -> Path | None:
    """Draw :func:`spkit.viz.headline_figure` from ``results.json`` into ``RUN/figures/headline.*``
    (HTML and plotly JSON; the PNG comes with :func:`export_pngs`). None without results."""
    from spkit import viz  # lazy: loads torch, which the report needs only to draw

    layout = RunLayout.at(run_dir)
    if results is None:
        if not layout.results_json.exists():
            return None
        results = load_results(layout.results_json)
    if not results.get("tasks"):
        return None
    viz.save_figure(viz.headline_figure(results), layout.figures, HEADLINE)
    return layout.figures / f"{HEADLINE}.plotly.json"


def _headline_html(layout: RunLayout) -> str:
    """The headline figure drawn in the page (plotly.js from ``figures/``), its PNG as the fallback."""
    import plotly.io as pio

    js = layout.figures / f"{HEADLINE}.plotly.json"
    png = layout.figures / f"{HEADLINE}.png"
    if not js.exists():
        return ""
    fig = pio.from_json(js.read_text(encoding="utf-8"))
    div = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id="headline-figure",
                      config={"displaylogo": False, "responsive": True})
    fallback = (f'<noscript><img src="{_rel(png, layout.root)}" alt="headline figure" width="100%">'
                "</noscript>" if png.exists() else "")
    alone = _rel(layout.figures / f"{HEADLINE}.html", layout.root)
    return f'<div class="headline">{div}{fallback}</div><p><a href="{alone}">headline figure alone</a></p>'


def _verdict_html(results: dict[str, Any]) -> list[str]:
    """The sentences, then the warnings (or the checks that passed)."""
    parts = ["<p class='verdict'>" + html.escape(" ".join(verdict_sentences(results))) + "</p>"]
    warns = run_warnings(results)
    if warns:
        items = "".join(
            f"<li class='warning' data-kind='{w.kind}'><b>{html.escape(w.title)}</b>: "
            f"{html.escape('; '.join(w.runs))}. {_code(w.advice)}</li>" for w in warns)
        parts.append(f"<section class='warnings' id='warnings'><h2>Warnings</h2>"
                     f"<p>{html.escape(warnings_intro(warns))}</p><ul>{items}</ul></section>")
    else:
        rates = ("chance or majority-class rate" if results.get("class_rates")
                 else "chance rate (not recorded)")
        parts.append(f"<p class='checks-ok'>No warnings: no result within a point of its {rates}, no run "
                     "stopped at its epoch cap, deep prompts beat their random-uLM control, and every result "
                     "has several seeds.</p>")
    return parts


def _code(text: str) -> str:
    """Escape ``text``, showing its ```backquoted``` parts as code."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _figure_cards(figs: list[Path], root: Path) -> str:
    items = []
    for f in figs:
        png = f.with_suffix(".png")
        thumb = (f'<br><img src="{_rel(png, root)}" width="420" alt="{html.escape(f.stem)}">'
                 if png.exists() else "")
        items.append(f'<div class="fig"><a href="{_rel(f, root)}">{html.escape(f.stem)}</a>{thumb}</div>')
    return "<div class='figs'>" + "".join(items) + "</div>"


def build_index(run_dir: str | os.PathLike, summary: dict[str, Any] | None = None) -> Path:
    """Write ``RUN/index.html`` (``summary``: the stage timings, default ``RUN/run_summary.json``). First
    what the run shows (the headline figure, the verdict sentences and
    the warnings, all from results.json), then the convergence and few-shot figures, the tables per task,
    the other figures, the notebooks and reports, and the stage timings last."""
    layout = RunLayout.at(run_dir)
    root = layout.root
    if summary is None and (root / "run_summary.json").is_file():  # a rebuilt report keeps the run's timings
        summary = read_json(root / "run_summary.json")
    parts = [f"<h1>spkit run: {html.escape(root.name)}</h1>",
             f"<p>written {time.strftime('%Y-%m-%d %H:%M:%S')}"
             + (f", preset <b>{html.escape(str(summary.get('preset')))}</b>" if summary else "") + "</p>"]
    unit_path = layout.units / "unit_model.json"
    unit_model = read_json(unit_path) if unit_path.is_file() else {}
    targets = unit_model.get("targets")
    if targets in TARGET_SENTENCES:  # what the encoder learned to predict, in one plain sentence
        sentence = html.escape(TARGET_SENTENCES[targets])
        parts.append(f"<p class='units'><b>Units</b>: k-means of {sentence}.</p>")
    if unit_model.get("kind") == ORACLE_KIND:
        label = html.escape(ORACLE_LABEL[0].upper() + ORACLE_LABEL[1:])
        parts.append(f"<p class='oracle'><b>{label}</b>: the units of this run are the synthesizer's phone "
                     "labels per 20 ms frame, not the output of a speech model; its numbers are a topline "
                     "for the prompting method, not a result of a speech system.</p>")
    results = load_results(layout.results_json) if layout.results_json.exists() else None
    if results and results.get("tasks"):
        js = layout.figures / f"{HEADLINE}.plotly.json"
        if not js.exists() or js.stat().st_mtime < layout.results_json.stat().st_mtime:
            write_headline_figure(root, results)
        parts.append("<h2 id='what-this-run-shows'>What this run shows</h2>" + _headline_html(layout))
        parts += _verdict_html(results)
    figs = sorted(layout.figures.glob("*.html")) if layout.figures.is_dir() else []
    figs = [f for f in figs if f.stem != HEADLINE]
    curves = [f for f in figs if f.stem.startswith("03_curves")]
    few = [f for f in figs if f.stem.startswith("03_few_shot")]
    if curves:
        parts.append("<h2>Convergence: validation score by epoch</h2>"
                     "<p>A curve still climbing at its last epoch stopped at its cap.</p>"
                     + _figure_cards(curves, root))
    if few:
        parts.append("<h2>Few-shot: score by training examples per class</h2>" + _figure_cards(few, root))
    if layout.results_md.exists():
        md = layout.results_md.read_text(encoding="utf-8")
        tables = md.split("## All methods", 1)
        parts.append("<h2>Results by task</h2>"
                     + _markdown_tables("## All methods" + tables[1] if len(tables) == 2 else md)
                     + f'<p><a href="{_rel(layout.results_json, root)}">results.json</a> · '
                       f'<a href="{_rel(layout.results_md, root)}">results.md</a></p>')
    others = [f for f in figs if f not in curves and f not in few]
    if others:
        parts.append("<h2>All figures</h2>" + _figure_cards(others, root))
    nbs = sorted(layout.notebooks.glob("*.ipynb")) if layout.notebooks.is_dir() else []
    if nbs:
        items = []
        for nb in nbs:
            h = nb.with_suffix(".html")
            link = f' (<a href="{_rel(h, root)}">HTML</a>)' if h.exists() else ""
            items.append(f'<li><a href="{_rel(nb, root)}">{html.escape(nb.name)}</a>{link}</li>')
        parts.append("<h2>Executed notebooks</h2><ul>" + "".join(items) + "</ul>")
    reports = [p for p in (layout.units / "metrics.json", layout.ulm / "report.json") if p.exists()]
    if reports:
        parts.append("<h2>Unit and uLM reports</h2><ul>" + "".join(
            f'<li><a href="{_rel(p, root)}">{_rel(p, root)}</a></li>' for p in reports) + "</ul>")
    if summary:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v['status'])}</td>"
                       f"<td>{v['seconds']:.1f}</td></tr>" for k, v in summary.get("stages", {}).items())
        preset = html.escape(str(summary.get("preset")))
        parts.append(f"<h2>Stages and timings</h2><p>preset <b>{preset}</b>, "
                     f"total {summary.get('seconds', 0):.0f} s</p>"
                     f"<table><tr><th>stage</th><th>status</th><th>seconds</th></tr>{rows}</table>")
    plotly_js = layout.figures / "plotly.min.js"
    script = f'<script src="{_rel(plotly_js, root)}"></script>' if plotly_js.exists() else ""
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>spkit run: {html.escape(root.name)}"
            f"</title>{script}<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    return write_text(layout.index_html, page)


def _markdown_tables(md: str) -> str:
    """Render the pipe tables (and headings) of results.md as HTML; other lines as paragraphs. Headings go
    one level below the report's own (``##`` -> ``<h3>``)."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, *body = table
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                                 for r in body) + "</table>")
            table.clear()

    for line in md.splitlines():
        s = line.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                table.append(cells)
            continue
        flush()
        if s.startswith("#"):
            level = min(len(s) - len(s.lstrip("#")) + 1, 6)
            out.append(f"<h{level}>{html.escape(s.lstrip('#').strip())}</h{level}>")
        elif s:
            out.append(f"<p>{_code(s)}</p>")
    flush()
    return "".join(out)


def finalize_run(run_dir: str | os.PathLike, summary: dict[str, Any] | None = None) -> Path:
    """Class rates for an older results.json, the headline figure, PNG figures (when a Chromium exists),
    results.md with the headline figure, notebook HTML, and ``index.html``."""
    layout = RunLayout.at(run_dir)
    results = backfill_class_rates(layout.root)
    if results is not None:
        write_headline_figure(layout.root, results)
    if layout.figures.is_dir():
        export_pngs(layout.figures)
    if results is not None:
        update_results(layout.results_json, [], figure=results_md_figure(layout))
    if layout.notebooks.is_dir():
        for nb in sorted(layout.notebooks.glob("*.ipynb")):
            notebook_html(nb)
    if summary is not None:
        write_json(layout.root / "run_summary.json", summary)
    return build_index(layout.root, summary)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run")


def screenshot_report(run_dir: str | os.PathLike, out: str | os.PathLike, width: int = 1280,
                      height: int = 1000, full_page: bool = False, timeout_s: float = 30.0) -> Path:
    """Open ``RUN/index.html`` in Debian's Chromium (Playwright, offline), wait until the headline figure is
    drawn, and save a screenshot of the first screen (``width`` x ``height``; ``full_page``: the whole page)
    to ``out``. How ``docs/report.png`` is made (``scripts/report_screenshot.py``)."""
    from playwright.sync_api import sync_playwright

    index = RunLayout.at(run_dir).index_html
    if not index.exists():
        raise FileNotFoundError(f"{index}: no run report (spkit run writes it at the end)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(index.as_uri())
            page.wait_for_selector("#headline-figure .main-svg", timeout=timeout_s * 1000)
            page.screenshot(path=str(out), full_page=full_page)
        finally:
            browser.close()
    return out

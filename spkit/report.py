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

from spkit.io import read_json, write_json, write_text
from spkit.layout import RunLayout
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


def build_index(run_dir: str | os.PathLike, summary: dict[str, Any] | None = None) -> Path:
    """Write ``RUN/index.html``: stages and timings, the results table, figures, notebooks, reports."""
    layout = RunLayout.at(run_dir)
    root = layout.root
    parts = [f"<h1>spkit run: {html.escape(root.name)}</h1>",
             f"<p>written {time.strftime('%Y-%m-%d %H:%M:%S')}</p>"]
    unit_model = layout.units / "unit_model.json"
    if unit_model.is_file() and read_json(unit_model).get("kind") == ORACLE_KIND:
        label = html.escape(ORACLE_LABEL[0].upper() + ORACLE_LABEL[1:])
        parts.append(f"<p class='oracle'><b>{label}</b>: the units of this run are the synthesizer's phone "
                     "labels per 20 ms frame, not the output of a speech model; its numbers are a topline "
                     "for the prompting method, not a result of a speech system.</p>")
    if summary:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v['status'])}</td>"
                       f"<td>{v['seconds']:.1f}</td></tr>" for k, v in summary.get("stages", {}).items())
        parts.append(f"<h2>Stages</h2><p>preset <b>{html.escape(str(summary.get('preset')))}</b>, "
                     f"total {summary.get('seconds', 0):.0f} s</p>"
                     f"<table><tr><th>stage</th><th>status</th><th>seconds</th></tr>{rows}</table>")
    if layout.results_md.exists():
        parts.append("<h2>Results</h2>" + _markdown_tables(layout.results_md.read_text(encoding="utf-8"))
                     + f'<p><a href="{_rel(layout.results_json, root)}">results.json</a> · '
                       f'<a href="{_rel(layout.results_md, root)}">results.md</a></p>')
    nbs = sorted(layout.notebooks.glob("*.ipynb")) if layout.notebooks.is_dir() else []
    if nbs:
        items = []
        for nb in nbs:
            h = nb.with_suffix(".html")
            link = f' (<a href="{_rel(h, root)}">HTML</a>)' if h.exists() else ""
            items.append(f'<li><a href="{_rel(nb, root)}">{html.escape(nb.name)}</a>{link}</li>')
        parts.append("<h2>Executed notebooks</h2><ul>" + "".join(items) + "</ul>")
    figs = sorted(layout.figures.glob("*.html")) if layout.figures.is_dir() else []
    if figs:
        items = []
        for f in figs:
            png = f.with_suffix(".png")
            thumb = (f'<br><img src="{_rel(png, root)}" width="420" alt="{html.escape(f.stem)}">'
                     if png.exists() else "")
            items.append(f'<div class="fig"><a href="{_rel(f, root)}">{html.escape(f.stem)}</a>{thumb}</div>')
        parts.append("<h2>Figures</h2><div class='figs'>" + "".join(items) + "</div>")
    reports = [p for p in (layout.units / "metrics.json", layout.ulm / "report.json") if p.exists()]
    if reports:
        parts.append("<h2>Reports</h2><ul>" + "".join(
            f'<li><a href="{_rel(p, root)}">{_rel(p, root)}</a></li>' for p in reports) + "</ul>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}.figs{display:flex;flex-wrap:wrap;gap:12px}"
             ".fig{border:1px solid #eee;padding:6px}.oracle{background:#fff3cd;padding:8px}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>spkit run</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    return write_text(layout.index_html, page)


def _markdown_tables(md: str) -> str:
    """Render the pipe tables (and headings) of results.md as HTML; other lines as paragraphs."""
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
            level = min(len(s) - len(s.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{html.escape(s.lstrip('#').strip())}</h{level}>")
        elif s:
            out.append(f"<p>{html.escape(s)}</p>")
    flush()
    return "".join(out)


def finalize_run(run_dir: str | os.PathLike, summary: dict[str, Any] | None = None) -> Path:
    """PNG figures (when a Chromium exists), notebook HTML, and ``index.html``."""
    layout = RunLayout.at(run_dir)
    if layout.figures.is_dir():
        export_pngs(layout.figures)
    if layout.notebooks.is_dir():
        for nb in sorted(layout.notebooks.glob("*.ipynb")):
            notebook_html(nb)
    if summary is not None:
        write_json(layout.root / "run_summary.json", summary)
    return build_index(layout.root, summary)

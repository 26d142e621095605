"""Plotly figures for the notebooks, and saving them offline (HTML with plotly.js inlined once per
folder, PNG through kaleido when a Chromium is installed). Notebooks only call these."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio

from spkit.io import atomic_path, write_text
from spkit.prompt.results import shots_order
from spkit.prompt.verdict import HEADLINE_METHODS, flagged, headline_rows, run_warnings

log = logging.getLogger(__name__)

FRAME_RATE = 50

NOTEBOOK_RENDERER = "plotly_mimetype+spkit_notebook"
"""Each figure as plotly JSON (JupyterLab) *and* a ``text/html`` fallback (nbconvert's HTML, GitHub and
other viewers without the plotly extension); the first figure of a kernel embeds plotly.js (offline)."""

_MATHJAX_CDN = re.compile(r'<script src="https://[^"]*mathjax[^"]*"></script>')


def use_notebook_renderer() -> None:
    """Make :data:`NOTEBOOK_RENDERER` plotly's default (done on import of this module inside a kernel,
    i.e. before the first figure of every notebook, which all import ``spkit.viz`` first).

    ``spkit_notebook`` is plotly's ``notebook`` renderer (plotly.js inlined once per kernel) without the
    MathJax script it fetches from a CDN for every figure: the kit's figures have no LaTeX, and a page
    must draw offline.
    """
    import plotly.io as pio
    from plotly.io._base_renderers import NotebookRenderer

    class OfflineNotebookRenderer(NotebookRenderer):
        def to_mimebundle(self, fig_dict: Any) -> dict[str, Any]:
            bundle = super().to_mimebundle(fig_dict)
            bundle["text/html"] = _MATHJAX_CDN.sub("", bundle["text/html"])
            return bundle

    if "spkit_notebook" not in pio.renderers:
        pio.renderers["spkit_notebook"] = OfflineNotebookRenderer(connected=False)
    pio.renderers.default = NOTEBOOK_RENDERER


if "ipykernel" in sys.modules:  # a notebook kernel: papermill, JupyterLab
    use_notebook_renderer()


def _go():
    import plotly.graph_objects as go

    return go


def save_figure(fig: Any, folder: str | os.PathLike, name: str, png: bool = False) -> list[Path]:
    """Write ``fig`` as ``folder/name.html`` (offline: plotly.js is a sibling file, no CDN) and its
    plotly JSON ``folder/name.plotly.json``; with ``png=True`` also ``folder/name.png`` now.

    PNG export starts a headless Chromium (kaleido) per call, ~4 s each; the main job instead exports
    every figure of a run in one batch at the end (:func:`spkit.report.export_pngs`).
    """
    from plotly.offline import get_plotlyjs

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    js = folder / "plotly.min.js"
    if not js.exists():
        write_text(js, get_plotlyjs())
    html = folder / f"{name}.html"
    with atomic_path(html) as tmp:
        fig.write_html(str(tmp), include_plotlyjs="plotly.min.js", full_html=True)
    out = [html, write_text(folder / f"{name}.plotly.json", fig.to_json())]
    if png:
        with atomic_path(folder / f"{name}.png") as tmp:
            fig.write_image(str(tmp), format="png", scale=1)
        out.append(folder / f"{name}.png")
    return out


def spectrogram_db(wave: torch.Tensor, sample_rate: int = 16_000, n_mels: int = 80) -> np.ndarray:
    """Log-mel spectrogram ``(n_mels, frames)`` in dB at 100 frames per second, for display."""
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=400, hop_length=160, n_mels=n_mels)(wave)
    return (10 * torch.log10(mel + 1e-10)).numpy()


def waveform_units_figure(wave: torch.Tensor, units: Sequence[int], title: str = "",
                          phones: Sequence[Sequence[Any]] | None = None,
                          sample_rate: int = 16_000) -> Any:
    """Waveform, spectrogram and per-frame units (and phone intervals) on one time axis.

    ``units``: one unit per 20 ms frame (not deduplicated); runs of a unit are drawn as labelled
    segments, so the deduplicated sequence reads left to right.
    """
    from plotly.subplots import make_subplots

    go = _go()
    t_wave = np.arange(wave.numel()) / sample_rate
    step = max(1, wave.numel() // 4000)  # keep the figure light
    spec = spectrogram_db(wave, sample_rate)
    rows = 3 if phones is None else 4
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        row_heights=[0.25, 0.4, 0.2] + ([0.15] if phones is not None else []))
    fig.add_trace(go.Scatter(x=t_wave[::step], y=wave.numpy()[::step], mode="lines", line={"width": 1},
                             name="waveform"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=spec, x=np.arange(spec.shape[1]) / 100, colorscale="Viridis",
                             showscale=False, name="log-mel"), row=2, col=1)
    units = list(units)
    starts = [0] + [i for i in range(1, len(units)) if units[i] != units[i - 1]]
    for k, s in enumerate(starts):
        e = starts[k + 1] if k + 1 < len(starts) else len(units)
        x0, x1 = s / FRAME_RATE, e / FRAME_RATE
        fig.add_trace(go.Scatter(x=[x0, x0, x1, x1, x0], y=[0, 1, 1, 0, 0], fill="toself", mode="lines",
                                 line={"width": 0.5}, hoverinfo="text", showlegend=False,
                                 text=f"unit {units[s]} ({x0:.2f}-{x1:.2f} s)",
                                 fillcolor=f"hsl({(units[s] * 47) % 360},60%,70%)"), row=3, col=1)
        fig.add_annotation(x=(x0 + x1) / 2, y=0.5, text=str(units[s]), showarrow=False,
                           font={"size": 9}, row=3, col=1)
    if phones is not None:
        for p, a, b in phones:
            fig.add_trace(go.Scatter(x=[a, a, b, b, a], y=[0, 1, 1, 0, 0], fill="toself", mode="lines",
                                     line={"width": 0.5}, showlegend=False, hoverinfo="text",
                                     text=f"{p} ({a:.2f}-{b:.2f} s)", fillcolor="rgba(200,200,200,0.5)"),
                          row=4, col=1)
            fig.add_annotation(x=(a + b) / 2, y=0.5, text=str(p), showarrow=False, font={"size": 9},
                               row=4, col=1)
    for r in range(3, rows + 1):
        fig.update_yaxes(visible=False, row=r, col=1)
    fig.update_xaxes(title_text="time (s)", row=rows, col=1)
    fig.update_layout(title=title, height=200 + 120 * rows, margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return fig


def cluster_sizes_figure(units: Mapping[str, Sequence[int]], n_clusters: int, title: str = "") -> Any:
    """Bar chart of how many frames each unit gets, sorted by size (a flat curve = balanced units)."""
    go = _go()
    counts = np.bincount(np.concatenate([np.asarray(u, dtype=np.int64) for u in units.values()]),
                         minlength=n_clusters)
    order = np.argsort(-counts)
    fig = go.Figure(go.Bar(x=[str(i) for i in order], y=counts[order]))
    fig.update_layout(title=title or "frames per unit (sorted)", xaxis_title="unit",
                      yaxis_title="frames", xaxis={"type": "category"}, height=350)
    return fig


def layer_selection_figure(rows: Sequence[Mapping[str, Any]], metric: str = "phone_pnmi") -> Any:
    """One line per candidate model: ``metric`` against the layer."""
    go = _go()
    fig = go.Figure()
    for cand in dict.fromkeys(r["candidate"] for r in rows):
        pts = sorted((r["layer"], r[metric]) for r in rows if r["candidate"] == cand)
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                 name=cand))
    fig.update_layout(title=f"{metric} by layer", xaxis_title="layer", yaxis_title=metric, height=350)
    return fig


def bar_table_figure(table: Mapping[str, Mapping[str, float]], title: str, yaxis: str) -> Any:
    """Grouped bars: ``table[group][series] = value``."""
    go = _go()
    groups = list(table)
    series = list(dict.fromkeys(s for g in table.values() for s in g))
    fig = go.Figure([go.Bar(name=s, x=groups, y=[table[g].get(s) for g in groups]) for s in series])
    fig.update_layout(title=title, barmode="group", yaxis_title=yaxis, height=380)
    return fig


def curves_figure(curves: Mapping[str, Sequence[float]], title: str, xaxis: str = "epoch",
                  yaxis: str = "loss") -> Any:
    """One line per named curve."""
    go = _go()
    fig = go.Figure([go.Scatter(y=list(v), x=list(range(1, len(v) + 1)), mode="lines+markers", name=k)
                     for k, v in curves.items()])
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, height=350)
    return fig


def convergence_figure(record: Mapping[str, Any], task: str, title: str | None = None) -> Any:
    """Validation metric (%) against optimizer steps, one line per recipe of a convergence record
    (``docs/results/prompt_convergence.json``: ``runs[]`` with ``name``, ``task``, ``seed``,
    ``steps_per_epoch`` and ``curve`` = ``[[epoch, valid_metric, train_loss], ...]``), the seed in the name
    when there are several."""
    go = _go()
    runs = [r for r in record.get("runs", []) if r.get("task") == task]
    seeds = {r["seed"] for r in runs}
    fig = go.Figure([
        go.Scatter(x=[c[0] * r["steps_per_epoch"] for c in r["curve"]], y=[100 * c[1] for c in r["curve"]],
                   mode="lines+markers", name=r["name"] + (f" (seed {r['seed']})" if len(seeds) > 1 else ""))
        for r in sorted(runs, key=lambda r: (r["name"], r["seed"]))])
    fig.update_layout(title=title or f"{task}: validation accuracy by training step, per prompt recipe",
                      xaxis_title="optimizer steps", yaxis_title="validation %", height=380)
    return fig


def few_shot_figure(curves: Mapping[str, Sequence[tuple[str, float, float]]], title: str,
                    metric: str = "accuracy") -> Any:
    """Few-shot curves: one line per method over examples per class (a category axis, ``all`` last), mean
    with ± std error bars. ``curves``: :func:`spkit.recipes.prompting.few_shot_curves`'s
    ``{method: [(n, mean, std), ...]}``. Lines are in method-name order, so a method keeps its colour
    across figures whatever order the results came in."""
    go = _go()
    fig = go.Figure([go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=method,
                                mode="lines+markers",
                                error_y={"type": "data", "array": [p[2] for p in pts], "visible": True})
                     for method, pts in sorted(curves.items())])
    # one category order for every line: plotly would otherwise append an n only a later line has after `all`
    order = shots_order({str(p[0]) for pts in curves.values() for p in pts})
    fig.update_layout(title=title, xaxis_title="examples per class", xaxis_type="category",
                      xaxis_categoryorder="array", xaxis_categoryarray=order, yaxis_title=metric, height=380)
    return fig


def heatmap_figure(z: np.ndarray, x: Sequence[str], y: Sequence[str], title: str,
                   colorscale: str = "Blues", text_auto: bool = True) -> Any:
    """A labelled heatmap (confusion matrices, attention maps)."""
    go = _go()
    fig = go.Figure(go.Heatmap(z=z, x=list(x), y=list(y), colorscale=colorscale,
                               text=np.round(z, 2) if text_auto else None,
                               texttemplate="%{text}" if text_auto else None))
    fig.update_layout(title=title, height=max(300, 28 * len(y) + 120), yaxis={"autorange": "reversed"})
    return fig


HEADLINE_COLORS = {"deep_prompt": "#1f77b4", "deep_prompt_random_lm": "#9e9e9e", "downstream": "#ff7f0e",
                   "finetune": "#2ca02c"}

HEADLINE_SHORT = {"deep_prompt": "prompts", "deep_prompt_random_lm": "control", "downstream": "head",
                  "finetune": "fine-tune"}


def headline_figure(results: Mapping[str, Any], title: str | None = None) -> Any:
    """What the run shows, in one figure: per task (one panel each, its own metric) deep prompts, their
    random-uLM control, the downstream head and fine-tuning where run, mean ± std over seeds (error bars;
    the hover names the seeds and parameters), with the task's chance rate and the test split's
    majority-class share as dashed lines (results.json ``class_rates``); a bar at that rate (a
    ``near_chance`` warning of :func:`spkit.prompt.verdict.run_warnings`) is hatched. From results.json
    alone."""
    from plotly.subplots import make_subplots

    go = _go()
    rows = headline_rows(results)
    if not rows:
        fig = go.Figure()
        fig.update_layout(title=title or "no results yet", height=200)
        return fig
    fig = make_subplots(rows=1, cols=len(rows), horizontal_spacing=0.06 if len(rows) > 2 else 0.1,
                        subplot_titles=[f"<b>{r['name']}</b><br>{r['metric']} % "
                                        f"({'lower' if r['lower_is_better'] else 'higher'} is better)"
                                        for r in rows])
    fig.update_annotations(font_size=12)  # the subplot titles (the line labels below are added later)
    near = {k for k, kinds in flagged(run_warnings(results)).items() if "near_chance" in kinds}
    shown: set[str] = set()
    for col, r in enumerate(rows, start=1):
        for b in r["bars"]:
            m = b["method"]
            fig.add_trace(go.Bar(
                marker_pattern_shape="/" if (r["task"], m) in near else "", showlegend=False,
                x=[HEADLINE_SHORT.get(m, m)], y=[b["mean"]], name=HEADLINE_METHODS[m], legendgroup=m,
                marker_color=HEADLINE_COLORS.get(m),
                error_y={"type": "data", "array": [b["std"]], "visible": True},
                text=[f"{b['mean']:.1f}"], textposition="outside", cliponaxis=False,
                hovertemplate=(f"{r['name']} {HEADLINE_METHODS[m]}: %{{y:.1f}} ± {b['std']:.1f} % "
                               f"({b['n_seeds']} seed{'s' if b['n_seeds'] != 1 else ''}, "
                               f"{b['params']:,} trainable parameters)<extra></extra>")),
                row=1, col=col)
            shown.add(m)
        for key, dash, color, label, where in (("chance", "dot", "#d62728", "chance", "bottom right"),
                                               ("majority", "dash", "#8c564b", "majority", "top right")):
            if r[key] is None:
                continue
            fig.add_hline(y=r[key], line_dash=dash, line_color=color, line_width=1.5, row=1, col=col,
                          annotation_text=f"{label} {r[key]:.1f}", annotation_position=where,
                          annotation_font_size=10, annotation_font_color=color,
                          annotation_bgcolor="rgba(255,255,255,0.85)")
        top = max([b["mean"] + b["std"] for b in r["bars"]] + [r["chance"] or 0, r["majority"] or 0])
        top = top * 1.15 + 5
        fig.update_yaxes(range=[0, top if r["lower_is_better"] else min(100.0, top)], row=1, col=col)
    # legend entries: one plain square per method (a bar's own would show its hatching) and the dashed lines
    # (add_hline draws shapes, which have none)
    for m in [m for m in HEADLINE_METHODS if m in shown]:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=HEADLINE_METHODS[m], legendgroup=m,
                                 marker={"symbol": "square", "size": 12, "color": HEADLINE_COLORS.get(m)}),
                      row=1, col=1)
    for key, dash, color, label in (("chance", "dot", "#d62728", "chance (1 / classes)"),
                                    ("majority", "dash", "#8c564b", "majority-class share of test")):
        if any(r[key] is not None for r in rows):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=label,
                                     line={"dash": dash, "color": color}), row=1, col=1)
    fig.update_layout(
        title=title or ("Test score per task, mean ± std over seeds"
                        + ("; hatched: at the chance or majority-class rate" if near else "")),
        barmode="overlay", height=450, margin={"l": 40, "r": 10, "t": 100, "b": 40},
        legend={"orientation": "h", "yanchor": "top", "y": -0.1, "x": 0})
    return fig

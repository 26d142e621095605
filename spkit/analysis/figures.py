"""Verbalizer analysis, the figures (notebook 04, plotly): confusion heatmaps, probability violins,
accuracy bars, the learnable head's weights and the units' mutual information with the labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spkit.analysis.metrics import confusion_matrix_normalise
from spkit.analysis.verbalizer import top_units


def confusion_figure(cm: np.ndarray, labels: Sequence[str], title: str) -> Any:
    """Row-normalised confusion heatmap with the counts in the hover text (true: rows, predicted: cols)."""
    import plotly.graph_objects as go

    norm = confusion_matrix_normalise(cm)
    fig = go.Figure(go.Heatmap(z=norm, x=list(labels), y=list(labels), colorscale="Blues", zmin=0, zmax=1,
                               text=np.round(norm, 2), texttemplate="%{text}", customdata=cm,
                               hovertemplate="true %{y}, predicted %{x}: %{customdata} clips "
                                             "(%{z:.2f} of the row)<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true",
                      yaxis={"autorange": "reversed"},
                      height=max(320, 28 * len(labels) + 140))
    return fig


def probability_violin_figure(dists: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]) -> Any:
    """Split violins: per class, p(class) on its own clips (left) vs on other clips (right), one color
    pair per verbalizer. ``dists``: ``{verbalizer: class_probabilities(...)}``."""
    import plotly.graph_objects as go

    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
    fig = go.Figure()
    for i, (kind, per_class) in enumerate(dists.items()):
        color = palette[i % len(palette)]
        for side, key in (("negative", "own"), ("positive", "other")):
            xs, ys = [], []
            for lb, d in per_class.items():
                xs += [lb] * len(d[key])
                ys += list(map(float, d[key]))
            fig.add_trace(go.Violin(x=xs, y=ys, side=side, name=f"{kind}: {key} clips", legendgroup=kind,
                                    scalegroup=f"{kind}{key}", points=False, meanline_visible=True,
                                    offsetgroup=str(i), spanmode="hard", line_color=color,
                                    opacity=1.0 if key == "own" else 0.45))
    fig.update_layout(title="probability of each class on its own clips (left) and on the others (right)",
                      violinmode="group", yaxis_title="p(class)", yaxis_range=[0, 1], height=420)
    return fig


def accuracy_figure(table: Mapping[str, Mapping[str, Any]],
                    title: str = "test accuracy by verbalizer") -> Any:
    """Bars of mean accuracy with ± sample std error bars (none for a single seed) and the seeds as dots."""
    import plotly.graph_objects as go

    kinds = list(table)
    fig = go.Figure(go.Bar(x=kinds, y=[table[k]["mean"] for k in kinds], name="mean",
                           error_y={"type": "data", "array": [table[k]["std"] or 0.0 for k in kinds],
                                    "visible": True},
                           text=[f"{100 * table[k]['mean']:.1f}% (n={table[k]['n_seeds']})" for k in kinds],
                           textposition="outside"))
    fig.add_trace(go.Scatter(x=[k for k in kinds for _ in table[k]["values"]],
                             y=[v for k in kinds for v in table[k]["values"]], mode="markers", name="seeds",
                             text=[f"seed {s}" for k in kinds for s in table[k]["seeds"]],
                             marker={"color": "black", "size": 7}))
    fig.update_layout(title=title, yaxis_title="accuracy", yaxis_range=[0, 1.05], height=380)
    return fig


def head_heatmap_figure(weights: np.ndarray, unit_ids: Sequence[int], labels: Sequence[str],
                        k: int = 5) -> Any:
    """Class x unit heatmap of the learnable head, on the union of every class' top-k units."""
    import plotly.graph_objects as go

    top = top_units(weights, unit_ids, labels, k)
    cols = sorted({u for v in top.values() for u, _ in v})
    pos = {u: j for j, u in enumerate(unit_ids)}
    z = np.asarray(weights)[:, [pos[u] for u in cols]]
    lim = float(np.abs(z).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=z, x=[str(u) for u in cols], y=list(labels), colorscale="RdBu",
                               zmid=0, zmin=-lim, zmax=lim,
                               hovertemplate="class %{y}, unit %{x}: weight %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"learnable verbalizer: head weights on each class' top-{k} units",
                      xaxis={"title": "unit", "type": "category"}, yaxis={"autorange": "reversed"},
                      height=max(320, 28 * len(labels) + 140))
    return fig


def mi_figure(mi: np.ndarray, picked: Sequence[int], top: int = 40) -> Any:
    """Bars of I(unit present; class) for the ``top`` units of highest MI, the verbalizer's picks marked."""
    import plotly.graph_objects as go

    mi = np.asarray(mi)
    order = [int(u) for u in np.lexsort((np.arange(mi.size), -mi))[:top]]
    shown = list(dict.fromkeys(order + [int(u) for u in picked if int(u) not in order]))
    chosen = set(int(u) for u in picked)
    fig = go.Figure(go.Bar(x=[str(u) for u in shown], y=[float(mi[u]) for u in shown],
                           marker_color=["crimson" if u in chosen else "steelblue" for u in shown]))
    fig.update_layout(title="I(unit present in clip; class), bits (red: units the learnable verbalizer "
                            "weights most)", xaxis={"title": "unit", "type": "category"},
                      yaxis_title="bits", height=360)
    return fig

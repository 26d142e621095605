"""Verbalizer analysis (notebook 04): how the frequency, random and learnable verbalizers behave on the
same task, prompts and seeds, and which unit tokens the learnable one relies on.

Prompt files come from ``RUN/prompts/<task>/<method>/seed<N>/prompt.pt`` (notebook 03,
:mod:`spkit.recipes.prompting`), one method per verbalizer (:data:`VERBALIZER_METHODS`): the main
``deep_prompt`` uses the frequency verbalizer, the ablations ``deep_prompt_verb-random`` and
``deep_prompt_verb-learnable`` the two others, with the same prompt length and trainer settings.
:func:`spkit.recipes.analysis_prompts.ensure_prompts` trains missing ones (a recipe: analyses never train).

What is computed (numpy, on the test split unless said otherwise):

* :func:`evaluate_prompt_file`: constrained class probabilities ``(N, C)`` and predictions of a prompt;
* :func:`confusion_matrix` ``(C, C)`` (rows: true class, columns: predicted), :func:`accuracy_table`
  (mean ± sample std over seeds), :func:`class_probabilities` (per class, the probability given to the
  class on its own clips vs on the other clips: box/violin plots);
* :func:`head_weights` / :func:`top_units`: the learnable verbalizer's linear head ``(C, V)`` restricted to
  unit tokens ``(C, U)``, and its top-weighted units per class;
* :func:`unit_presence`, :func:`mutual_information`, :func:`unit_label_mi` and :func:`unit_class_mi`: the
  plug-in mutual information (bits) between "unit u occurs in the clip" and the label, on training clips;
  :func:`compare_with_mi` puts the verbalizer's picks beside the units of highest MI;
* :func:`unit_segments` / :func:`unit_audio`: what a unit sounds like -- the longest runs of frames
  assigned to it in training clips (``units/<corpus>/train.txt``, one unit per 20 ms frame), cut from the
  16 kHz audio and concatenated with short silences between them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from spkit.errors import UserError
from spkit.layout import RunLayout

VERBALIZERS: tuple[str, ...] = ("frequency", "random", "learnable")
VERBALIZER_METHODS: dict[str, str] = {"frequency": "deep_prompt", "random": "deep_prompt_verb-random",
                                      "learnable": "deep_prompt_verb-learnable"}
SAMPLES_PER_FRAME = 320  # HuBERT hop at 16 kHz: one unit per 20 ms
SAMPLE_RATE = 16_000


class AnalysisError(UserError, ValueError):
    """Missing or inconsistent inputs of an analysis; the message names the file or run folder."""


# ------------------------------------------------------------------------------------------------
# Prompt files of a run
# ------------------------------------------------------------------------------------------------

def prompt_files(run_dir: str | os.PathLike, task: str, method: str) -> dict[int, Path]:
    """``{seed: RUN/prompts/<task>/<method>/seed<N>/prompt.pt}`` for the seeds that have a prompt file."""
    base = RunLayout.at(run_dir).root / "prompts" / task / method
    out: dict[int, Path] = {}
    for p in sorted(base.glob("seed*/prompt.pt")) if base.is_dir() else []:
        m = re.fullmatch(r"seed(\d+)", p.parent.name)
        if m:
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------

@dataclass
class PromptEval:
    """Constrained scoring of one prompt file on one split.

    Attributes:
        kind: the verbalizer (``frequency``, ``random``, ``learnable``).
        seed: the training seed of the prompt.
        labels: class names in index order.
        uids: the clips, in order.
        y_true, y_pred: (N,) class indices.
        probs: (N, C) class probabilities (rows sum to 1).
    """

    kind: str
    seed: int
    labels: tuple[str, ...]
    uids: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray

    @property
    def accuracy(self) -> float:
        return float((self.y_true == self.y_pred).mean())


def evaluate_prompt_file(path: str | os.PathLike, lm: Any, dictionary: Any, units_dir: str | os.PathLike,
                         split: str = "test", seed: int = 0, batch_size: int = 64,
                         max_examples: int | None = None) -> tuple[PromptEval, Any]:
    """Load ``path`` on the frozen ``lm`` and score ``units_dir/<split>.jsonl`` with constrained decoding.

    Returns ``(PromptEval, the PromptedULM)``. Raises :class:`AnalysisError` for a sequence task (ASR has
    no class confusion to analyse).
    """
    from spkit.prompt.checkpoint import load_prompt
    from spkit.prompt.decode import evaluate
    from spkit.prompt.tasks import Collator, check_labels, load_task

    model = load_prompt(path, lm)
    spec = model.spec
    if spec.kind != "classification":
        raise AnalysisError(f"{path}: task {spec.name!r} is not a classification task")
    data = load_task(spec.name, units_dir, (split,))
    check_labels(spec, data, units_dir)
    examples = data[split][:max_examples] if max_examples else data[split]
    collator = Collator(spec, model.verbalizer, dictionary, max_len=lm.cfg.max_positions)
    ev = evaluate(model, examples, collator, batch_size=batch_size, mode="constrained")
    probs = np.asarray(ev["probs"], dtype=np.float64)
    y_true = np.array([spec.class_index(e.label) for e in examples])
    result = PromptEval(kind=model.verbalizer.kind, seed=seed, labels=spec.labels,
                        uids=[e.uid for e in examples], y_true=y_true, y_pred=probs.argmax(1), probs=probs)
    return result, model


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int,
                     normalize: bool = False) -> np.ndarray:
    """(C, C) counts: ``cm[i, j]`` = clips of true class i predicted as j. ``normalize``: each row divided
    by its total (rows of absent classes stay 0)."""
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: y_true {t.shape} and y_pred {p.shape} differ")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"confusion_matrix: a class index is outside 0..{n_classes - 1}")
    cm = sklearn_confusion_matrix(t, p, labels=np.arange(n_classes)).astype(np.int64)
    return confusion_matrix_normalise(cm) if normalize else cm


def accuracy_table(evals: Sequence[PromptEval]) -> dict[str, dict[str, Any]]:
    """Per verbalizer: ``{"mean", "std" (sample std, None for one seed), "n_seeds", "seeds", "values"}``."""
    from spkit.prompt.results import mean_std

    out: dict[str, dict[str, Any]] = {}
    for kind in dict.fromkeys(e.kind for e in evals):
        rows = sorted((e.seed, e.accuracy) for e in evals if e.kind == kind)
        mean, std = mean_std([v for _, v in rows])
        out[kind] = {"mean": mean, "std": std, "n_seeds": len(rows), "seeds": [s for s, _ in rows],
                     "values": [v for _, v in rows]}
    return out


def class_probabilities(probs: np.ndarray, y_true: Sequence[int] | np.ndarray,
                        labels: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per class c: ``own`` = p(c) on clips whose label is c, ``other`` = p(c) on the other clips.

    A well-separating verbalizer puts ``own`` near 1 and ``other`` near 0 (probs: (N, C)).
    """
    probs, y = np.asarray(probs), np.asarray(y_true)
    if probs.ndim != 2 or probs.shape != (len(y), len(labels)):
        raise ValueError(f"class_probabilities: probs {probs.shape} do not fit {len(y)} clips x "
                         f"{len(labels)} classes")
    return {lb: {"own": probs[y == c, c], "other": probs[y != c, c]} for c, lb in enumerate(labels)}


# ------------------------------------------------------------------------------------------------
# The learnable head
# ------------------------------------------------------------------------------------------------

def unit_tokens(dictionary: Any) -> tuple[list[int], list[int]]:
    """``(token indices, unit ids)`` of the dictionary's real unit tokens (specials and madeupwords out)."""
    from spkit.prompt.verbalizer import usable_tokens

    toks = usable_tokens(dictionary)
    units = []
    for t in toks:
        sym = dictionary.symbols[t]
        if not sym.isdigit():
            raise AnalysisError(f"dictionary symbol {sym!r} (token {t}) is not a unit id")
        units.append(int(sym))
    return toks, units


def head_weights(verbalizer: Any, dictionary: Any) -> tuple[np.ndarray, list[int]]:
    """The learnable verbalizer's head weights on unit tokens: ``(W (C, U), unit ids (U,))``.

    ``W[c, j]`` is how much the LM's next-token logit of unit ``unit_ids[j]`` at ``<sep>`` adds to class c.
    """
    if verbalizer.head is None:
        raise AnalysisError(f"verbalizer {verbalizer.kind!r} has no learnable head")
    toks, units = unit_tokens(dictionary)
    w = verbalizer.head.weight.detach().float().cpu().numpy()
    return w[:, toks], units


def top_units(weights: np.ndarray, unit_ids: Sequence[int], labels: Sequence[str],
              k: int = 5) -> dict[str, list[tuple[int, float]]]:
    """Per class, the ``k`` units of highest weight (ties: lower unit id first): ``[(unit, weight)]``."""
    weights = np.asarray(weights)
    if weights.shape != (len(labels), len(unit_ids)):
        raise ValueError(f"top_units: weights {weights.shape} != ({len(labels)}, {len(unit_ids)})")
    ids = np.asarray(unit_ids)
    out = {}
    for c, lb in enumerate(labels):
        order = np.lexsort((ids, -weights[c]))[:k]
        out[lb] = [(int(ids[j]), float(weights[c, j])) for j in order]
    return out


# ------------------------------------------------------------------------------------------------
# Mutual information between units and labels
# ------------------------------------------------------------------------------------------------

def unit_presence(unit_seqs: Sequence[Sequence[int]], n_units: int) -> np.ndarray:
    """(N, K) bool: clip n contains unit k at least once."""
    out = np.zeros((len(unit_seqs), n_units), dtype=bool)
    for n, seq in enumerate(unit_seqs):
        arr = np.asarray(seq, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= n_units):
            raise ValueError(f"unit_presence: clip {n} has a unit outside 0..{n_units - 1}")
        out[n, arr] = True
    return out


def mutual_information(x: Sequence[int] | np.ndarray, y: Sequence[int] | np.ndarray) -> float:
    """Plug-in I(X; Y) in bits of two discrete variables observed together ((N,) integer arrays)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"mutual_information: need two equal-length non-empty 1-D arrays, got {x.shape}, "
                         f"{y.shape}")
    _, xi = np.unique(x, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((xi.max() + 1, yi.max() + 1))
    np.add.at(joint, (xi, yi), 1.0)
    return _mi_from_joint(joint)


def _mi_from_joint(joint: np.ndarray) -> float:
    p = joint / joint.sum()
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / (px @ py)[nz])).sum())


def unit_label_mi(presence: np.ndarray, y: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """(K,) I(unit k present in clip; class) in bits, from (N, K) presence and (N,) class indices."""
    presence, y = np.asarray(presence, dtype=bool), np.asarray(y, dtype=np.int64)
    onehot = np.eye(n_classes)[y]  # (N, C)
    with_u = presence.T.astype(np.float64) @ onehot  # (K, C): clips of class c containing unit k
    without = onehot.sum(0)[None, :] - with_u
    return np.array([_mi_from_joint(np.stack([with_u[k], without[k]])) for k in range(presence.shape[1])])


def unit_class_mi(presence: np.ndarray, y: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """(C, K) I(unit k present; clip is of class c) in bits: one-vs-rest, per class and unit.

    Signed by the direction of the association: negative when the unit is *rarer* in class c than
    elsewhere (so sorting by it finds the units typical of the class, e.g. of its word).
    """
    presence, y = np.asarray(presence, dtype=bool), np.asarray(y, dtype=np.int64)
    N = len(y)
    out = np.zeros((n_classes, presence.shape[1]))
    pres = presence.astype(np.float64)
    n_u = pres.sum(0)  # (K,)
    for c in range(n_classes):
        in_c = y == c
        a = pres[in_c].sum(0)  # present & class c
        b = n_u - a  # present & not c
        cnt = in_c.sum()
        for k in range(presence.shape[1]):
            joint = np.array([[a[k], b[k]], [cnt - a[k], N - cnt - b[k]]])
            mi = _mi_from_joint(joint)
            rate_in = a[k] / cnt if cnt else 0.0
            rate_out = b[k] / (N - cnt) if N - cnt else 0.0
            out[c, k] = mi if rate_in >= rate_out else -mi
    return out


def compare_with_mi(weights: np.ndarray, unit_ids: Sequence[int], class_mi: np.ndarray,
                    labels: Sequence[str], k: int = 5) -> list[dict[str, Any]]:
    """Per class: the head's top-k units, the top-k units by (signed) MI with the class, their overlap,
    and the Spearman correlation between head weight and MI over all units.

    ``weights``: (C, U) over ``unit_ids``; ``class_mi``: (C, K) over unit ids 0..K-1.
    """
    from scipy.stats import spearmanr

    ids = np.asarray(unit_ids)
    top_head = top_units(weights, unit_ids, labels, k)
    rows = []
    for c, lb in enumerate(labels):
        mi = class_mi[c, ids]
        by_mi = [int(ids[j]) for j in np.lexsort((ids, -mi))[:k]]
        picked = [u for u, _ in top_head[lb]]
        varies = np.ptp(weights[c]) > 0 and np.ptp(mi) > 0  # Spearman is undefined on a constant
        rho = spearmanr(weights[c], mi).statistic if varies else float("nan")
        rows.append({"class": lb, "head_top": picked, "mi_top": by_mi,
                     "overlap": len(set(picked) & set(by_mi)), "spearman": float(rho)})
    return rows


def class_indices(clip_labels: Sequence[str], labels: Sequence[str]) -> tuple[list[int], list[int]]:
    """``(positions of the clips whose label is one of labels, their class indices)``; clips of a class the
    task does not know (none after :func:`spkit.prompt.tasks.check_labels`) are left out."""
    index = {lb: i for i, lb in enumerate(labels)}
    keep = [n for n, lb in enumerate(clip_labels) if lb in index]
    return keep, [index[clip_labels[n]] for n in keep]


# ------------------------------------------------------------------------------------------------
# What a unit sounds like
# ------------------------------------------------------------------------------------------------

def unit_segments(frame_units: Mapping[str, Sequence[int]], unit: int,
                  min_frames: int = 1) -> list[tuple[str, int, int]]:
    """Runs of frames assigned to ``unit``: ``(uid, start frame, end frame)``, longest first (ties: uid,
    start). ``frame_units``: ``{uid: per-frame units}`` as in ``units/<corpus>/<split>.txt``."""
    runs = []
    for uid, seq in frame_units.items():
        arr = np.asarray(seq, dtype=np.int64)
        if arr.size == 0:
            continue
        hit = np.concatenate([[False], arr == unit, [False]])
        edges = np.flatnonzero(hit[1:] != hit[:-1])
        for s, e in zip(edges[::2], edges[1::2]):
            if e - s >= min_frames:
                runs.append((uid, int(s), int(e)))
    runs.sort(key=lambda r: (-(r[2] - r[1]), r[0], r[1]))
    return runs


def unit_audio(segments: Sequence[tuple[str, int, int]], paths: Mapping[str, str | os.PathLike],
               n_frames: Mapping[str, int] | None = None, max_seconds: float = 1.0, gap_s: float = 0.04,
               fade_s: float = 0.004, max_segments: int = 25) -> np.ndarray:
    """Concatenate the audio of ``segments`` (frames of 20 ms, 320 samples at 16 kHz) into one clip.

    Each cut gets a short linear fade in and out (no clicks) and ``gap_s`` of silence after it; cutting
    stops at ``max_seconds`` or ``max_segments``. Returns a float32 (samples,) array at 16 kHz (empty
    when ``segments`` is). ``paths``: uid -> audio file (each is read once). ``n_frames``: uid -> the
    record's frame count; a clip whose file holds another number of frames (a window cut from a longer
    file, e.g. Speech Commands' ``_silence_``, whose offset the unit record does not keep) is skipped.
    """
    from spkit.audio import load_audio

    cache: dict[str, np.ndarray] = {}
    out: list[np.ndarray] = []
    total, budget = 0, int(max_seconds * SAMPLE_RATE)
    gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
    nfade = max(1, int(fade_s * SAMPLE_RATE))
    for uid, s, e in segments[:max_segments]:
        if total >= budget:
            break
        if uid not in paths:
            raise AnalysisError(f"unit_audio: no audio path for clip {uid!r}")
        if uid not in cache:
            cache[uid] = np.asarray(load_audio(paths[uid], SAMPLE_RATE), dtype=np.float32)
        if n_frames and uid in n_frames and abs(hubert_frames(cache[uid].size) - n_frames[uid]) > 1:
            continue
        cut = cache[uid][s * SAMPLES_PER_FRAME:e * SAMPLES_PER_FRAME].copy()
        if cut.size == 0:
            continue
        cut = cut[:budget - total]
        n = min(nfade, cut.size // 2)
        if n:
            ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
            cut[:n] *= ramp
            cut[-n:] *= ramp[::-1]
        out += [cut, gap]
        total += cut.size + gap.size
    return np.concatenate(out)[:budget] if out else np.zeros(0, dtype=np.float32)


def hubert_frames(n_samples: int) -> int:
    """Frames HuBERT makes of ``n_samples`` at 16 kHz: floor((N - 400) / 320) + 1 (0 when shorter)."""
    return max(0, (n_samples - 400) // SAMPLES_PER_FRAME + 1)


def record_paths(records: Sequence[Mapping[str, Any]],
                 where: str | os.PathLike = "") -> tuple[dict[str, str], dict[str, int]]:
    """``({uid: audio path}, {uid: n_frames})`` of unit records (``<split>.jsonl``); :class:`AnalysisError`
    naming ``where`` for a record without a path."""
    paths, frames = {}, {}
    for r in records:
        if not r.get("path"):
            raise AnalysisError(f"{where}: record {r.get('uid')!r} has no audio path")
        paths[str(r["uid"])] = str(r["path"])
        if "n_frames" in r:
            frames[str(r["uid"])] = int(r["n_frames"])
    return paths, frames


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------

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


def confusion_matrix_normalise(cm: np.ndarray) -> np.ndarray:
    """Each row of a count matrix divided by its sum (zero rows stay 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)


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


# ------------------------------------------------------------------------------------------------
# Markdown tables (what the notebook prints beside the figures)
# ------------------------------------------------------------------------------------------------

def accuracy_markdown(table: Mapping[str, Mapping[str, Any]]) -> str:
    """The :func:`accuracy_table` as a markdown table (percent; std ``–`` with a single seed)."""
    lines = ["| verbalizer | mean | std | seeds | per seed |", "|---|---:|---:|---:|---|"]
    for kind, r in table.items():
        std = "–" if r["std"] is None else f"{100 * r['std']:.1f}"
        per_seed = ", ".join(f"{s}: {100 * v:.1f}%" for s, v in zip(r["seeds"], r["values"]))
        lines.append(f"| {kind} | {100 * r['mean']:.1f}% | {std} | {r['n_seeds']} | {per_seed} |")
    return "\n".join(lines)


def head_markdown(verbalizer: Any, dictionary: Any, labels: Sequence[str],
                  top: Mapping[str, Sequence[tuple[int, float]]]) -> str:
    """Per class: the unit the head was initialised on (the frequency verbalizer's, when each class has one
    single-token code) and its top units with their weights."""
    init: dict[str, str] = {}
    if verbalizer.code_len == 1 and len(verbalizer.codes) == len(labels):
        init = {lb: dictionary.symbols[c[0]] for lb, c in zip(labels, verbalizer.codes)}
    lines = ["| class | initial unit (frequency) | top units (weight) |", "|---|---|---|"]
    for lb in labels:
        units = ", ".join(f"{u} ({w:+.2f})" for u, w in top[lb])
        lines.append(f"| {lb} | {init.get(lb, '–')} | {units} |")
    return "\n".join(lines)


def mi_comparison_markdown(rows: Sequence[Mapping[str, Any]], k: int) -> str:
    """The :func:`compare_with_mi` rows as a markdown table."""
    lines = ["| class | head's top units | top units by MI with the class | overlap | Spearman(weight, MI) |",
             "|---|---|---|---:|---:|"]
    for r in rows:
        head, mi = " ".join(map(str, r["head_top"])), " ".join(map(str, r["mi_top"]))
        lines.append(f"| {r['class']} | {head} | {mi} | {r['overlap']}/{k} | {r['spearman']:.2f} |")
    return "\n".join(lines)

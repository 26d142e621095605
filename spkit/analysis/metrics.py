"""Verbalizer analysis, the numbers (notebook 04): confusion matrices, accuracy over seeds, class
probabilities, and the plug-in mutual information (bits) between units and labels.

* :func:`confusion_matrix` ``(C, C)`` (rows: true class, columns: predicted; scikit-learn's),
  :func:`accuracy_table` (mean ± sample std over seeds), :func:`class_probabilities` (per class, the
  probability given to the class on its own clips vs on the other clips);
* :func:`unit_presence`, :func:`mutual_information` (scikit-learn's, in bits), :func:`unit_label_mi` and
  :func:`unit_class_mi`: "unit u occurs in the clip" against the label, on training clips;
  :func:`compare_with_mi` puts the learnable verbalizer's picks beside the units of highest MI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from spkit.analysis.verbalizer import PromptEval, top_units
from spkit.prompt.results import mean_std


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


def confusion_matrix_normalise(cm: np.ndarray) -> np.ndarray:
    """Each row of a count matrix divided by its sum (zero rows stay 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)


def accuracy_table(evals: Sequence[PromptEval]) -> dict[str, dict[str, Any]]:
    """Per verbalizer: ``{"mean", "std" (sample std, None for one seed), "n_seeds", "seeds", "values"}``."""
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

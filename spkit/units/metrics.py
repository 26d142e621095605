"""How well discrete units match phones (or words): purity, cluster purity, PNMI, sequence length.

Definitions follow HuBERT (Hsu et al. 2021, "cluster quality"): with the joint distribution
``p(y, z)`` of a frame's reference label ``y`` (phone) and its code ``z`` (unit), counted over all
frames,

* phone purity ``= sum_z p(z) max_y p(y | z)`` (how pure each unit is; "label purity" here),
* cluster purity ``= sum_y p(y) max_z p(z | y)`` (how concentrated each phone is on one unit),
* PNMI ``= I(y; z) / H(y)``: the fraction of the phone label's uncertainty that the unit removes
  (1: the phone is a function of the unit; 0: independent).

The metrics take plain per-frame ``codes`` and ``labels``; :func:`frame_pairs` joins a unit file with
the synthesizer's alignments (through :func:`spkit.data.alignments.frame_labels`, one label per
20 ms frame, ``sil`` outside intervals). Entropies are in nats (PNMI is a ratio, so unaffected).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import mutual_info_score

from spkit.data.alignments import frame_labels
from spkit.units.encoded import dedup

FRAME_RATE = 50  # units per second before deduplication (HuBERT's 20 ms hop)


@dataclass(frozen=True)
class ClusterQuality:
    """Cluster-quality numbers of codes against reference labels (see module docstring).

    ``purity`` is phone purity when the labels are phones; ``pnmi`` is ``nan`` when the labels
    have no entropy (a single label).
    """

    purity: float
    cluster_purity: float
    pnmi: float
    mutual_info: float
    label_entropy: float
    n_frames: int
    n_labels: int
    n_codes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def contingency(codes: Sequence[int] | np.ndarray, labels: Sequence[Hashable],
                ignore: Iterable[Hashable] = ()) -> tuple[np.ndarray, list[Hashable], list[int]]:
    """Count table ``(n_labels, n_codes)`` of frame pairs; frames whose label is in ``ignore`` are dropped.

    Returns ``(counts, label values, code values)`` with both value lists sorted (labels by ``str``).
    """
    codes = np.asarray(codes).reshape(-1)
    labels = list(labels)
    if len(codes) != len(labels):
        raise ValueError(f"codes and labels must pair frame by frame: {len(codes)} codes, "
                         f"{len(labels)} labels")
    skip = set(ignore)
    keep = np.array([lab not in skip for lab in labels], dtype=bool) if skip else np.ones(len(labels), bool)
    codes = codes[keep]
    labels = [lab for lab, k in zip(labels, keep) if k]
    label_values = sorted(set(labels), key=str)
    label_index = {v: i for i, v in enumerate(label_values)}
    code_values, code_idx = np.unique(codes, return_inverse=True)
    lab_idx = np.fromiter((label_index[v] for v in labels), dtype=np.int64, count=len(labels))
    counts = np.zeros((len(label_values), len(code_values)), dtype=np.int64)
    np.add.at(counts, (lab_idx, code_idx.reshape(-1)), 1)
    return counts, label_values, [int(c) for c in code_values]


def quality_from_counts(counts: np.ndarray) -> ClusterQuality:
    """:class:`ClusterQuality` from a count table ``(n_labels, n_codes)``."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if counts.ndim != 2 or total <= 0:
        raise ValueError("no frames to score (empty count table)")
    p = counts / total
    p_y = p.sum(1)
    p_z = p.sum(0)
    mi = float(mutual_info_score(None, None, contingency=counts))  # nats, from the count table
    h_y = float(-(p_y[p_y > 0] * np.log(p_y[p_y > 0])).sum())
    mi = max(mi, 0.0)  # rounding can leave -1e-17 for independent variables
    return ClusterQuality(
        purity=float(p.max(0).sum()),          # sum_z max_y p(y, z) = E_z[max_y p(y|z)]
        cluster_purity=float(p.max(1).sum()),  # sum_y max_z p(y, z) = E_y[max_z p(z|y)]
        pnmi=mi / h_y if h_y > 0 else math.nan,
        mutual_info=mi, label_entropy=h_y, n_frames=int(total),
        n_labels=int((p_y > 0).sum()), n_codes=int((p_z > 0).sum()))


def cluster_quality(codes: Sequence[int] | np.ndarray, labels: Sequence[Hashable],
                    ignore: Iterable[Hashable] = ()) -> ClusterQuality:
    """Purity, cluster purity and PNMI of per-frame ``codes`` ``(frames,)`` against ``labels`` ``(frames,)``.

    ``ignore``: labels whose frames are left out (e.g. ``{"sil"}`` to score speech frames only).
    """
    counts, _, _ = contingency(codes, labels, ignore)
    return quality_from_counts(counts)


def frame_pairs(units: Mapping[str, Sequence[int]], alignments: Mapping[str, Any], tier: str = "phones",
                frame_rate: float = FRAME_RATE) -> tuple[np.ndarray, list[str], list[str]]:
    """Join per-frame units with alignments: ``(codes (frames,), labels (frames,), uids missing)``.

    Args:
        units: ``{uid: per-frame units}`` (not deduplicated), e.g. :func:`spkit.units.quantize.read_units`.
        alignments: ``{uid: alignment record}`` (``{"phones": [[p, start_s, end_s], ...], "words": ...}``),
            e.g. :func:`alignments_by_uid` of utterances loaded with their alignments attached.
        tier: ``phones`` or ``words``.

    Utterances without an alignment are skipped and listed in the third return value.
    """

    codes: list[np.ndarray] = []
    labels: list[str] = []
    missing: list[str] = []
    for uid, seq in units.items():
        ali = alignments.get(uid)
        if ali is None:
            missing.append(uid)
            continue
        codes.append(np.asarray(seq, dtype=np.int64))
        labels.extend(frame_labels(ali, len(seq), frame_rate=frame_rate, tier=tier))
    all_codes = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    return all_codes, labels, missing


def alignments_by_uid(utterances: Iterable[Any]) -> dict[str, Any]:
    """``{uid: meta["alignment"]}`` for utterances loaded with alignments attached (spkit's corpora)."""
    return {u.uid: u.meta["alignment"] for u in utterances if "alignment" in u.meta}


def sequence_stats(units: Mapping[str, Sequence[int]], frame_rate: float = FRAME_RATE) -> dict[str, float]:
    """Length statistics of per-frame unit sequences ``{uid: units}``.

    Returns ``mean_frames`` (per utterance), ``mean_dedup_length`` (units per utterance after
    collapsing repeats), ``dedup_units_per_second`` (all deduplicated units over all seconds),
    ``dedup_ratio`` (deduplicated / frames) and ``n_utterances``.
    """

    if not units:
        raise ValueError("no unit sequences to measure")
    frames = np.array([len(s) for s in units.values()], dtype=np.float64)
    lengths = np.array([len(dedup(s)[0]) for s in units.values()], dtype=np.float64)
    seconds = frames.sum() / frame_rate
    return {"n_utterances": len(units), "mean_frames": float(frames.mean()),
            "mean_dedup_length": float(lengths.mean()),
            "dedup_units_per_second": float(lengths.sum() / seconds) if seconds else math.nan,
            "dedup_ratio": float(lengths.sum() / frames.sum()) if frames.sum() else math.nan}


def unit_report(units: Mapping[str, Sequence[int]], alignments: Mapping[str, Any] | None = None,
                tiers: Sequence[str] = ("phones", "words"), ignore: Iterable[Hashable] = ()
                ) -> dict[str, Any]:
    """Everything above for one unit file: sequence stats, and per tier the cluster quality.

    ``{"sequence": {...}, "phones": {...}, "words": {...}, "n_unaligned": int}``; tiers are left out
    when no alignment is given.
    """
    report: dict[str, Any] = {"sequence": sequence_stats(units)}
    if alignments:
        ignore = tuple(ignore)
        for tier in tiers:
            codes, labels, missing = frame_pairs(units, alignments, tier)
            if len(codes):
                report[tier] = cluster_quality(codes, labels, ignore).as_dict()
            report["n_unaligned"] = len(missing)
    return report

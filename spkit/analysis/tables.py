"""Verbalizer analysis, the markdown tables notebook 04 prints beside its figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


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

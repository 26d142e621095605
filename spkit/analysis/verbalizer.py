"""Verbalizer analysis (notebook 04): how the frequency, random and learnable verbalizers behave on the
same task, prompts and seeds, and which unit tokens the learnable one relies on.

Prompt files are listed by :func:`spkit.artifacts.prompt_files` (``RUN/prompts/<task>/<method>/seed<N>/
prompt.pt``, written by notebook 03), one method per verbalizer (:func:`verbalizer_methods`): the main
``deep_prompt`` uses the preset's verbalizer (``frequency`` except in ``full``, whose KWS prompts use the
``learnable`` one), the ablations ``deep_prompt_verb-<kind>`` the two others, with the same prompt length and
trainer settings.
:func:`spkit.recipes.analysis_prompts.ensure_prompts` trains missing ones (a recipe: analyses never train).

This module scores prompt files and reads the learnable verbalizer's head:

* :func:`evaluate_prompt_file`: constrained class probabilities ``(N, C)`` and predictions of a prompt;
* :func:`head_weights` / :func:`top_units`: the learnable verbalizer's linear head ``(C, V)`` restricted to
  unit tokens ``(C, U)``, and its top-weighted units per class.

The rest of the analysis, by concept: :mod:`spkit.analysis.metrics` (confusion matrices, accuracy over
seeds, class probabilities, unit-label mutual information), :mod:`spkit.analysis.unit_audio` (what a unit
sounds like), :mod:`spkit.analysis.figures` (plotly) and :mod:`spkit.analysis.tables` (markdown).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spkit.errors import UserError
from spkit.prompt.checkpoint import load_prompt
from spkit.prompt.decode import evaluate
from spkit.prompt.tasks import Collator, check_labels, load_task
from spkit.prompt.verbalizer import usable_tokens

VERBALIZERS: tuple[str, ...] = ("frequency", "random", "learnable")



class AnalysisError(UserError, ValueError):
    """Missing or inconsistent inputs of an analysis; the message names the file or run folder."""


def verbalizer_methods(main: str = "frequency") -> dict[str, str]:
    """``{verbalizer kind: method folder}``: the ``main`` kind (the preset's verbalizer) is notebook 03's
    ``deep_prompt``, every other kind its ablation ``deep_prompt_verb-<kind>``."""
    if main not in VERBALIZERS:
        raise AnalysisError(f"unknown verbalizer {main!r}; expected one of {list(VERBALIZERS)}")
    return {k: "deep_prompt" if k == main else f"deep_prompt_verb-{k}" for k in VERBALIZERS}


VERBALIZER_METHODS: dict[str, str] = verbalizer_methods("frequency")  # the presets' main verbalizer


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


# ------------------------------------------------------------------------------------------------
# The learnable head
# ------------------------------------------------------------------------------------------------

def unit_tokens(dictionary: Any) -> tuple[list[int], list[int]]:
    """``(token indices, unit ids)`` of the dictionary's real unit tokens (specials and madeupwords out)."""
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

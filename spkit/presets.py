"""The run presets and what each one builds on.

| preset | corpora | units and uLM |
|---|---|---|
| ``smoke`` | tiny synthesized corpora | trained from zero in the run (seconds; the tests) |
| ``default`` | the default synthesized corpora | **spkit-base**, pretrained once, shipped (``models/``) |
| ``scratch`` | the default synthesized corpora | trained from zero in the run (the whole from-zero path) |
| ``full`` | the default synthesized corpora | **spkit-base**, as ``default``; every clip, to convergence |
| ``paper`` | the real data sets (``--corpus``) | fairseq HuBERT Base + GSLM ``km.bin`` + GSLM uLM |
| ``oracle`` | the default corpora + the pretraining corpus | **oracle topline** (below) |

``oracle`` is an **oracle topline, not a speech system**, and never a default: its units are the
synthesizer's phone labels per 20 ms frame, deduplicated (:mod:`spkit.units.oracle`); its uLM is trained on
the pretraining corpus's oracle units by spkit-base's uLM recipe; prompts and baselines are ``default``'s, and
the downstream baseline reads spkit-base's HuBERT (oracle units have no features). Every preset but ``paper``
takes oracle units at its own size with the notebook parameter ``units="oracle"`` (``spkit run --preset smoke
--param units=oracle``); the ``oracle`` preset is ``default`` with ``units="oracle"``.
"""

from __future__ import annotations

from spkit.layout import REPO_ROOT

RUN_PRESETS = ("smoke", "default", "scratch", "full", "paper", "oracle")
SHIPPED_BASE = REPO_ROOT / "models" / "spkit-base"
"""The shipped spkit-base folder (``spkit pretrain-base --out models/spkit-base`` rebuilds it)."""

UNIT_KINDS = ("ssl", "oracle")
"""The ``units`` notebook parameter: ``ssl`` (SSL features + k-means: every preset's own) or ``oracle`` (the
oracle topline: the synthesizer's phone labels; never a default)."""

_CORPUS_PRESET = {"smoke": "smoke", "default": "default", "scratch": "default", "full": "default",
                  "oracle": "default"}

PRETRAIN_CORPUS = "pretrain"
"""The pretraining corpus's name among a run's corpora (``spkit synth pretrain``; oracle units only): its
training split builds the phone inventory and its units (``RUN/units/pretrain``) train the oracle uLM."""

PRETRAIN_CORPUS_SEED = 0
"""Seed of the pretraining corpus the oracle topline reads: the one spkit-base was trained on
(``BaseRecipe.corpus_seed``), whatever the task corpora's seed."""


def uses_oracle_units(preset: str, units: str | None = None) -> bool:
    """Whether a run of ``preset`` with the notebook parameter ``units`` (None: the preset's) makes oracle
    units; an unknown ``units`` or a contradiction (``oracle`` with ``units="ssl"``) is a ValueError."""
    if units is not None and units not in UNIT_KINDS:
        raise ValueError(f"units={units!r}: choose one of {UNIT_KINDS} (ssl: the preset's SSL units; oracle: "
                         "the oracle topline, synthesizer phone labels)")
    if preset == "oracle" and units == "ssl":
        raise ValueError("preset oracle is units=oracle; use preset default for the same run on SSL units")
    return preset == "oracle" or units == "oracle"


def corpus_preset(preset: str) -> str:
    """The size of the synthesized corpora a run preset uses (``scratch``, ``full`` and ``oracle`` use the
    default corpora)."""
    if preset not in _CORPUS_PRESET:
        raise ValueError(
            f"preset {preset!r} has no synthesized corpora (it reads the real data sets)"
            if preset == "paper"
            else f"unknown preset {preset!r}; choose one of {RUN_PRESETS}"
        )
    return _CORPUS_PRESET[preset]

"""The run presets and what each one builds on.

| preset | corpora | units and uLM |
|---|---|---|
| ``smoke`` | tiny synthesized corpora | trained from zero in the run (seconds; the tests) |
| ``default`` | the default synthesized corpora | **spkit-base**, pretrained once, shipped (``models/``) |
| ``scratch`` | the default synthesized corpora | trained from zero in the run (the whole from-zero path) |
| ``paper`` | the real data sets (``--corpus``) | fairseq HuBERT Base + GSLM ``km.bin`` + GSLM uLM |
"""

from __future__ import annotations

from spkit.layout import REPO_ROOT

RUN_PRESETS = ("smoke", "default", "scratch", "paper")
SHIPPED_BASE = REPO_ROOT / "models" / "spkit-base"
"""The shipped spkit-base folder (``spkit pretrain-base --out models/spkit-base`` rebuilds it)."""

_CORPUS_PRESET = {"smoke": "smoke", "default": "default", "scratch": "default"}


def corpus_preset(preset: str) -> str:
    """The size of the synthesized corpora a run preset uses (``scratch`` uses the default corpora)."""
    if preset not in _CORPUS_PRESET:
        raise ValueError(
            f"preset {preset!r} has no synthesized corpora (it reads the real data sets)"
            if preset == "paper"
            else f"unknown preset {preset!r}; choose one of {RUN_PRESETS}"
        )
    return _CORPUS_PRESET[preset]

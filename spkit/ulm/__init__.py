"""The unit language model: GSLM's uLM architecture, fairseq interop, pretraining.

``from spkit.ulm import UnitLM, ULMConfig, UnitDictionary, load_ulm`` covers the common uses; fairseq
loading lives in :mod:`spkit.ulm.fairseq_io` (imports fairseq lazily), training in :mod:`spkit.ulm.train`.
"""

from spkit.ulm.dictionary import UnitDictionary, VocabMismatchError
from spkit.ulm.model import (
    CONFIGS,
    KVCache,
    ULMConfig,
    ULMOutput,
    UnitLM,
    lm_loss,
    transformer_lm,
    transformer_lm_big,
    ulm_small,
    ulm_tiny,
)

# (the function spkit.ulm.train.train is not re-exported: it would shadow the submodule's name)
from spkit.ulm.train import ULMTrainConfig, load_ulm

__all__ = [
    "CONFIGS",
    "KVCache",
    "ULMConfig",
    "ULMOutput",
    "ULMTrainConfig",
    "UnitDictionary",
    "UnitLM",
    "VocabMismatchError",
    "lm_loss",
    "load_ulm",
    "transformer_lm",
    "transformer_lm_big",
    "ulm_small",
    "ulm_tiny",
]

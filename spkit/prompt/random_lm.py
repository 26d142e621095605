"""The random-uLM control (method ``deep_prompt_random_lm``): deep prompts trained on a frozen uLM of the
same configuration as the pretrained one but with fresh weights, which measures what pretraining the uLM
contributes. The random model is drawn from the *training seed* (:func:`control_seed`), so the control's
std over seeds covers the choice of random model too, as the other methods' std covers their
initialisation.
"""

from __future__ import annotations

import torch

from spkit.ulm.model import ULMConfig, UnitLM

RANDOM_LM_SEED = 1234
"""The offset of the control's uLM seeds (:func:`control_seed`); a prompt file of the control stores the seed
of its uLM in ``info["random_lm_seed"]`` (:mod:`spkit.prompt.predict` rebuilds that uLM from it)."""


def control_seed(training_seed: int) -> int:
    """The seed of the random uLM of the control run with ``training_seed``: a new random model per seed."""
    return RANDOM_LM_SEED + int(training_seed)


def random_ulm(config: ULMConfig | UnitLM, seed: int = RANDOM_LM_SEED,
               device: str | torch.device = "cpu") -> UnitLM:
    """A frozen uLM with the same configuration as ``config`` (or as the given model) and fresh weights.

    The initialisation is the uLM's own (fairseq's scheme, :meth:`UnitLM.reset_parameters`) drawn from
    ``seed``, so the same seed gives the same weights, without touching the caller's global RNG state.
    The control method ``deep_prompt_random_lm`` trains deep prompts on this model.
    """
    cfg = ULMConfig.from_dict((config.cfg if isinstance(config, UnitLM) else config).to_dict())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UnitLM(cfg)
    return model.to(device).freeze()


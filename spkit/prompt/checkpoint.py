"""Prompt files: everything a prompted task needs *except* the uLM, in kilobytes.

``prompt.pt`` (``RUN/prompts/<task>/<method>/seed<N>/prompt.pt``, written atomically by
:func:`save_prompt`) is a ``torch.save`` of a plain dict (loaded with ``weights_only=True``: safe to load
from untrusted sources)::

    format: "spkit-prompt", version: 1
    task: TaskSpec.to_dict()
    prompt: {config: prompt config (reparameterisation folded away), state: {name: tensor}}
    separator: (d,) tensor
    verbalizer: Verbalizer.to_dict()
    ulm: {fingerprint: sha256 of the uLM config and weights, config: ULMConfig.to_dict()}
    units: {kmeans: ..., extractor: ...} fingerprints of the unit model, as passed in (may be empty)
    info: free-form extras (training config, metrics), plain data only

:func:`load_prompt` rebuilds the :class:`PromptedULM` on a given uLM and refuses (``PromptFileError``,
naming the file and both fingerprints) a uLM with another fingerprint, or a unit model whose fingerprints
differ from the stored ones. The state loads strictly (missing or unexpected keys are errors).
:func:`load_prompt_on_ulm` does the same on the uLM a prompt was *trained* on: the given pretrained one, or,
for the random-uLM control (``info["random_lm"]``), the random uLM of the stored seed rebuilt from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from spkit.errors import UserError
from spkit.io import torch_save
from spkit.prompt.model import PromptedULM
from spkit.prompt.prompts import DeepPrompt, prompt_from_config
from spkit.prompt.random_lm import RANDOM_LM_SEED, random_ulm
from spkit.prompt.tasks import TaskSpec
from spkit.prompt.verbalizer import Verbalizer
from spkit.ulm.model import UnitLM

FORMAT = "spkit-prompt"
VERSION = 1


class PromptFileError(UserError, ValueError):
    """A prompt file that is unreadable, malformed, or made for another uLM / unit model."""


def prompt_payload(model: PromptedULM, unit_fingerprints: Mapping[str, str] | None = None,
                   info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dict :func:`save_prompt` writes (reparameterised prompts materialised, tensors on CPU)."""
    prompt = model.prompt
    if isinstance(prompt, DeepPrompt) and prompt.reparam_hidden is not None:
        prompt = prompt.materialize()
    return {
        "format": FORMAT, "version": VERSION,
        "task": model.spec.to_dict(),
        "prompt": {"config": prompt.config(),
                   "state": {k: v.detach().float().cpu().clone() for k, v in prompt.state_dict().items()}},
        "separator": model.separator.detach().float().cpu().clone(),
        "verbalizer": model.verbalizer.to_dict(),
        "ulm": {"fingerprint": model.ulm_fingerprint(), "config": model.lm.cfg.to_dict()},
        "units": dict(unit_fingerprints or {}),
        "info": dict(info or {}),
    }


def save_prompt(path: str | os.PathLike, model: PromptedULM,
                unit_fingerprints: Mapping[str, str] | None = None,
                info: Mapping[str, Any] | None = None) -> Path:
    """Write the prompt file atomically; returns its path. ``unit_fingerprints``: e.g.
    ``{"kmeans": km.fingerprint, "extractor": ext.fingerprint}``; ``info``: plain-data extras."""
    return torch_save(prompt_payload(model, unit_fingerprints, info), path)


def read_prompt_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check the raw dict of a prompt file (no model built)."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"{path}: no such prompt file")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PromptFileError(f"{path}: not a readable prompt file ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        fmt = d.get("format") if isinstance(d, dict) else None
        raise PromptFileError(f"{path}: not an spkit prompt file (format {fmt!r}, expected {FORMAT!r})")
    if d.get("version") != VERSION:
        raise PromptFileError(f"{path}: prompt file version {d.get('version')!r}, this spkit reads {VERSION}")
    missing = [k for k in ("task", "prompt", "separator", "verbalizer", "ulm", "units") if k not in d]
    if missing:
        raise PromptFileError(f"{path}: prompt file lacks {missing}")
    return d


def load_prompt(path: str | os.PathLike, lm: UnitLM, unit_fingerprints: Mapping[str, str] | None = None
                ) -> PromptedULM:
    """Rebuild the prompted model of ``path`` on ``lm`` (frozen by this call).

    Raises PromptFileError when ``lm``'s fingerprint differs from the stored one, or when a fingerprint
    in ``unit_fingerprints`` differs from the stored one of the same name; the message names the file and
    both fingerprints.
    """
    path = Path(path)
    d = read_prompt_file(path)
    stored = d["ulm"]["fingerprint"]
    actual = lm.fingerprint()
    if stored != actual:
        raise PromptFileError(f"{path}: trained on the uLM with fingerprint {stored}, but the given uLM has "
                              f"fingerprint {actual}; load it with the uLM it was trained on")
    for name, fp in (unit_fingerprints or {}).items():
        if name in d["units"] and d["units"][name] != fp:
            raise PromptFileError(f"{path}: trained on units from the {name} with fingerprint "
                                  f"{d['units'][name]}, but the given {name} has fingerprint {fp}")
    try:
        spec = TaskSpec.from_dict(d["task"])
        verbalizer = Verbalizer.from_dict(d["verbalizer"])
        prompt = prompt_from_config(d["prompt"]["config"])
        prompt.load_state_dict(d["prompt"]["state"], strict=True)
    except (KeyError, ValueError, RuntimeError) as e:
        raise PromptFileError(f"{path}: malformed prompt file ({type(e).__name__}: {e})") from None
    device = next(lm.parameters()).device
    model = PromptedULM(lm, spec, verbalizer, prompt, d["separator"]).to(device)
    model._fingerprint = actual
    return model


def trained_on_random_ulm(d: Mapping[str, Any]) -> bool:
    """Whether the raw prompt file ``d`` (:func:`read_prompt_file`) is the random-uLM control's."""
    return bool((d.get("info") or {}).get("random_lm"))


def load_prompt_on_ulm(path: str | os.PathLike, lm: UnitLM,
                       unit_fingerprints: Mapping[str, str] | None = None,
                       control: bool | None = None) -> PromptedULM:
    """:func:`load_prompt` on the uLM the prompt was trained on.

    ``lm`` is the run's pretrained uLM. A prompt of the random-uLM control (``control``; None: as the file's
    ``info["random_lm"]`` says) is loaded on :func:`~spkit.prompt.random_lm.random_ulm` of ``lm``'s shape
    drawn from the file's ``info["random_lm_seed"]`` (default :data:`~spkit.prompt.random_lm.RANDOM_LM_SEED`),
    on ``lm``'s device; the fingerprint check then proves it is the very model the prompt was trained on.
    """
    d = read_prompt_file(path)
    if control is None:
        control = trained_on_random_ulm(d)
    if control:
        seed = int((d.get("info") or {}).get("random_lm_seed", RANDOM_LM_SEED))
        lm = random_ulm(lm, seed=seed, device=next(lm.parameters()).device)
    return load_prompt(path, lm, unit_fingerprints)

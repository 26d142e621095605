"""Full fine-tuning of the uLM: every uLM weight trains on the prompt trainer's own sequences, loss,
stopping rule and decoding (no prompts), through :func:`spkit.prompt.train.train`, so the comparison with
prompts changes only what trains.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spkit.prompt.model import PromptedULM
from spkit.prompt.tasks import Collator, TaskExample, TaskSpec
from spkit.prompt.train import TrainConfig, TrainResult, train
from spkit.prompt.verbalizer import Verbalizer
from spkit.ulm.model import UnitLM


class NoPrompt(nn.Module):
    """The prompt slot of a fine-tuned model: no prompt, so the uLM gets no prompt hook arguments."""

    def hook_kwargs(self) -> dict[str, Any]:
        return {}

    def config(self) -> dict[str, Any]:
        return {"type": "none"}


class FineTunedULM(PromptedULM):
    """Full fine-tuning: a :class:`PromptedULM` with no prompt whose uLM weights *all* train.

    Same sequences (``[</s>, units, <sep>, label tokens]``), trainable separator, verbalizer, loss
    (:meth:`PromptedULM.loss`, label positions only) and decoding (:mod:`spkit.prompt.decode`) as the
    prompts, so the comparison changes only what trains. By default the uLM's dropout stays off as for the
    prompts (same numbers for the same seed, exact resume); ``lm_dropout=True`` turns it on in training
    mode (its masks then come from the global RNG, which :func:`train_finetune` seeds).
    """

    def __init__(self, lm: UnitLM, spec: TaskSpec, verbalizer: Verbalizer, separator: Tensor | None = None,
                 lm_dropout: bool = False):
        self.lm_dropout = lm_dropout  # read by train(), which nn.Module.__init__ does not call
        super().__init__(lm, spec, verbalizer, NoPrompt(), separator)  # type: ignore[arg-type]
        # Fixed now, before any update: it names the uLM fine-tuning *started from*, so the trainer's
        # resume check (train_state.pt) matches a fresh FineTunedULM built on the same base uLM.
        self._fingerprint = self.lm.fingerprint()
        for p in self.lm.parameters():
            p.requires_grad_(True)

    def train(self, mode: bool = True) -> FineTunedULM:
        nn.Module.train(self, mode)
        if not self.lm_dropout:
            self.lm.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter: uLM weights, separator, verbalizer head (if learnable)."""
        return [p for p in self.parameters() if p.requires_grad]

    def named_trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


def build_finetune(lm: UnitLM, spec: TaskSpec, verbalizer: Verbalizer, lm_dropout: bool = False
                   ) -> FineTunedULM:
    """A trainable copy of ``lm`` (the caller's model is left untouched) wrapped for fine-tuning; nothing
    random is drawn (the separator starts from the ``<s>`` embedding), so every seed starts alike."""
    return FineTunedULM(copy.deepcopy(lm), spec, verbalizer, lm_dropout=lm_dropout)


def finetune_config(**overrides: Any) -> TrainConfig:
    """The prompt trainer's :class:`TrainConfig` with fine-tuning defaults: lr 1e-4 (the prompts' 5e-2
    would wreck 151M pretrained weights), gradient clipping 1.0, the same batch size and early stopping."""
    return TrainConfig(**{"lr": 1e-4, "grad_clip": 1.0, **overrides})


def train_finetune(lm: UnitLM, spec: TaskSpec, verbalizer: Verbalizer,
                   data: Mapping[str, Sequence[TaskExample]], collator: Collator,
                   cfg: TrainConfig | None = None, *, out_dir: str | os.PathLike | None = None,
                   resume: bool = True, progress: bool = True, lm_dropout: bool = False,
                   settings: Mapping[str, Any] | None = None) -> tuple[FineTunedULM, TrainResult]:
    """Fine-tune every weight of a copy of ``lm`` on the task with the prompt trainer
    (:func:`spkit.prompt.train.train`: same batches, loss, stopping rule, report).

    Args:
        lm: the pretrained uLM (not modified; a copy trains).
        spec, verbalizer, collator: the same as the prompt runs of this task.
        data: ``{"train", "valid"}`` task examples (the prompts' splits).
        cfg: training settings (default :func:`finetune_config`); ``cfg.seed`` sets the data order.
        out_dir: ``train_state.pt`` for resuming (holds the whole uLM: ~1.8 GB at GSLM's size with Adam).
        settings: what else identifies the run (a saved state made with other settings is trained over).
        lm_dropout: train with the uLM's dropout (seeded from ``cfg.seed``; a resumed run then differs
            from an uninterrupted one, as the dropout RNG state is not saved).
    Returns:
        (the fine-tuned model at its best validation loss, the trainer's :class:`TrainResult`, whose
        ``num_trainable`` counts every uLM weight plus the separator).
    """
    cfg = cfg or finetune_config()
    model = build_finetune(lm, spec, verbalizer, lm_dropout=lm_dropout)
    with torch.random.fork_rng(devices=[]):  # dropout masks from cfg.seed, caller's RNG untouched
        torch.manual_seed(cfg.seed)
        result = train(model, data, collator, cfg, out_dir=out_dir, resume=resume, progress=progress,
                       settings={"lm_dropout": lm_dropout, **dict(settings or {})})
    return model, result


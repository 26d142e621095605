"""The prompted uLM: a frozen :class:`spkit.ulm.UnitLM` plus what trains (prompt, separator, verbalizer).

Trainable parameters, exactly (``PromptedULM.num_trainable()``), by method (the names of results.json):

* the prompt: ``input_prompt`` ``L*d``; ``deep_prompt`` (SpeechPrompt's form) ``(2*n_layers + 1)*L*d``;
  ``deep_prompt_tied`` ``n_layers*L*d``; ``prefix_prompt`` (PEFT) ``n_layers*2*L*d``; reparameterised: the
  MLP and its (L, d) embedding instead of the prefixes (folded away at save time);
* the separator embedding ``d`` (``separator_init``: the frozen ``<s>`` row, or N(0, 1) as SpeechPrompt);
* the verbalizer's head: ``learnable`` ``V*C`` (v2's plain linear map), ``learnable_freqinit`` ``V*C + C``
  (frequency/random verbalizers have none).

SpeechPrompt's count includes the input prompt it trains beside its deep prompts, which receives no gradient
in that form (its keys and values are replaced in every layer). ``deep_prompt`` keeps it, in the same slots,
so the count is the paper's (GSLM's uLM, IC, L=6: 154,624 with the separator); it is the one dead tensor
(:meth:`PromptedULM.dead_parameter_names`, zero gradient, tested), and :meth:`PromptedULM.num_live`
counts the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spkit.prompt.prompts import DeepPrompt, InputPrompt
from spkit.prompt.tasks import SEP_IDX, PromptBatch, TaskExample, TaskSpec
from spkit.prompt.verbalizer import Verbalizer
from spkit.ulm.model import KVCache, ULMOutput, UnitLM

METHODS: tuple[str, ...] = ("deep_prompt", "deep_prompt_tied", "prefix_prompt", "input_prompt")
INITS: tuple[str, ...] = ("activations", "random", "vocab")
SEPARATOR_INITS: tuple[str, ...] = ("vocab", "random")
# SpeechPrompt's prompt dropout (v1 prompt_lm.py, v2 transformer_prompt_decoder.py)
SPEECHPROMPT_DROPOUT = 0.1


@dataclass
class PromptConfig:
    """How to prompt.

    Attributes:
        method: ``deep_prompt`` (SpeechPrompt: separate key and value prompts per layer through the frozen
            k/v projections, plus its input prompt), ``deep_prompt_tied`` (one input per slot feeds both
            projections; ablation), ``prefix_prompt`` (PEFT prefix tuning: post-projection keys/values) or
            ``input_prompt`` (input prompts only).
        length: prompt length L.
        reparam_hidden: MLP width for reparameterised deep/prefix prompts (None: direct parameters).
        init: ``activations`` (copy the frozen LM's own activations on training inputs), ``random``
            (N(0, 1), SpeechPrompt) or ``vocab`` (input prompts: random scaled embeddings).
        dropout: prompt dropout in training; None: SpeechPrompt's 0.1, except 0 for ``prefix_prompt``
            (PEFT's prefixes have none).
        separator_init: ``vocab`` (the frozen ``<s>`` embedding row) or ``random`` (N(0, 1), SpeechPrompt).
    """

    method: str = "deep_prompt"
    length: int = 20
    reparam_hidden: int | None = None
    init: str = "activations"
    dropout: float | None = None
    separator_init: str = "vocab"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"prompt method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.init not in INITS:
            raise ValueError(f"prompt init {self.init!r} is not one of {', '.join(INITS)}")
        if self.separator_init not in SEPARATOR_INITS:
            raise ValueError(f"separator_init {self.separator_init!r} is not one of "
                             f"{', '.join(SEPARATOR_INITS)}")
        if self.method == "input_prompt" and self.reparam_hidden is not None:
            raise ValueError("reparam_hidden applies to deep/prefix prompts only")
        if self.init == "vocab" and self.method != "input_prompt":
            raise ValueError("init 'vocab' applies to input prompts only")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"prompt dropout {self.dropout} is not in [0, 1)")

    @property
    def prompt_dropout(self) -> float:
        """The dropout in effect (None resolved)."""
        if self.dropout is not None:
            return float(self.dropout)
        return 0.0 if self.method == "prefix_prompt" else SPEECHPROMPT_DROPOUT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_prompt(lm: UnitLM, cfg: PromptConfig) -> InputPrompt | DeepPrompt:
    """An uninitialised (random) prompt module shaped for ``lm``."""
    c = lm.cfg
    if cfg.method == "input_prompt":
        return InputPrompt(cfg.length, c.dim, cfg.prompt_dropout)
    return DeepPrompt(c.n_layers, cfg.length, c.dim, c.n_heads, cfg.method, cfg.reparam_hidden,
                      cfg.prompt_dropout)


class PromptedULM(nn.Module):
    """Frozen uLM + prompt + trainable separator + verbalizer.

    The LM's parameters never require gradients and the LM always stays in eval mode (no dropout), even
    when this module is put in training mode.
    """

    def __init__(self, lm: UnitLM, spec: TaskSpec, verbalizer: Verbalizer, prompt: InputPrompt | DeepPrompt,
                 separator: Tensor | None = None):
        super().__init__()
        self.lm = lm.freeze()
        self.spec, self.verbalizer, self.prompt = spec, verbalizer, prompt
        if verbalizer.vocab_size != lm.cfg.vocab_size:
            raise ValueError(f"verbalizer built for {verbalizer.vocab_size} tokens, the uLM has "
                             f"{lm.cfg.vocab_size}")
        init = lm.embed_tokens.weight[SEP_IDX] if separator is None else separator
        self.separator = nn.Parameter(init.detach().clone().float())
        if tuple(self.separator.shape) != (lm.cfg.dim,):
            raise ValueError(f"separator has shape {tuple(self.separator.shape)}, the uLM needs "
                             f"({lm.cfg.dim},)")
        self._fingerprint: str | None = None
        self.eval()  # inference until a trainer asks for training mode (prompt dropout is a training thing)

    def train(self, mode: bool = True) -> PromptedULM:
        super().train(mode)
        self.lm.eval()  # frozen: dropout stays off
        return self

    # -- parameters ---------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter that trains (prompt, separator, verbalizer head); the LM's are excluded."""
        return [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("lm.")]

    def named_trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad and not n.startswith("lm.")]

    def num_trainable(self) -> int:
        """Exact number of trainable scalars (as SpeechPrompt counts them: dead ones included)."""
        return sum(p.numel() for p in self.trainable_parameters())

    def dead_parameter_names(self) -> list[str]:
        """Trainable tensors that cannot reach the loss (zero gradient): ``deep_prompt``'s input prompt."""
        return [f"prompt.{n}" for n in self.prompt.dead_parameters()]

    def num_live(self) -> int:
        """Trainable scalars that reach the loss (:meth:`num_trainable` minus the dead tensors)."""
        dead = set(self.dead_parameter_names())
        return sum(p.numel() for n, p in self.named_trainable_parameters() if n not in dead)

    def prompt_state(self) -> dict[str, Tensor]:
        """The trainable state (no LM weights), detached copies, for checkpoints."""
        return {n: p.detach().clone() for n, p in self.named_trainable_parameters()}

    def load_prompt_state(self, state: dict[str, Tensor]) -> None:
        """Strict inverse of :meth:`prompt_state`: missing or unexpected keys, or shape changes, raise."""
        own = dict(self.named_trainable_parameters())
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(f"prompt state mismatch: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for n, p in own.items():
                if tuple(state[n].shape) != tuple(p.shape):
                    raise ValueError(f"prompt state {n}: shape {tuple(state[n].shape)} != {tuple(p.shape)}")
                p.copy_(state[n])

    def ulm_fingerprint(self) -> str:
        """The frozen LM's fingerprint (computed once: the LM never changes)."""
        if self._fingerprint is None:
            self._fingerprint = self.lm.fingerprint()
        return self._fingerprint

    # -- forward ------------------------------------------------------------------------------------
    def embed(self, tokens: Tensor) -> Tensor:
        """(B, T) tokens -> (B, T, d) unscaled embeddings with the trainable separator at ``<sep>``."""
        emb = self.lm.embed_tokens(tokens)
        is_sep = (tokens == SEP_IDX)[..., None]
        return torch.where(is_sep, self.separator.to(emb.dtype).expand_as(emb), emb)

    def forward(self, tokens: Tensor, padding_mask: Tensor | None = None, *, use_cache: bool = False,
                **kw: Any) -> ULMOutput:
        """Run the prompted LM on (B, T) tokens; returns :class:`ULMOutput` (logits (B, T, V))."""
        return self.lm(tokens, token_embeds=self.embed(tokens), padding_mask=padding_mask,
                       use_cache=use_cache, **self.prompt.hook_kwargs(), **kw)

    def step(self, tokens: Tensor, cache: KVCache, padding_mask: Tensor | None = None) -> ULMOutput:
        """Continue a cached run with (B, 1) tokens (labels/characters: no separator, no prompt again)."""
        return self.lm(tokens, padding_mask=padding_mask, cache=cache, use_cache=True)

    def class_logits(self, logits: Tensor, sep_pos: Tensor) -> Tensor:
        """Learnable verbalizer: (B, T, V) LM logits -> (B, C) class scores from the ``<sep>`` position."""
        if self.verbalizer.head is None:
            raise ValueError(f"verbalizer {self.verbalizer.kind!r} has no learnable head")
        at_sep = logits[torch.arange(logits.shape[0], device=logits.device), sep_pos]
        return self.verbalizer.head(at_sep.float())

    def loss(self, batch: PromptBatch) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy over label positions only, and the number of label targets.

        Token verbalizers: next-token CE at the positions that predict label tokens (and ``</s>`` for
        sequence tasks). Learnable verbalizer: CE over the C class scores at ``<sep>``.
        """
        out = self(batch.tokens, batch.padding_mask)
        if self.verbalizer.head is not None:
            scores = self.class_logits(out.logits, batch.sep_pos)
            return F.cross_entropy(scores, batch.class_ids), torch.tensor(len(batch.uids))
        logits = out.logits[batch.label_mask].float()  # (N, V)
        targets = batch.targets[batch.label_mask]
        return F.cross_entropy(logits, targets), targets.new_tensor(targets.numel())


@torch.no_grad()
def init_prompt(model: PromptedULM, cfg: PromptConfig, batch: PromptBatch | None, seed: int = 0) -> None:
    """Initialise ``model.prompt`` as ``cfg.init`` says (``activations`` needs a training ``batch``,
    whose real tokens (pads excluded) are the positions sampled from). Seeded."""
    g = torch.Generator().manual_seed(seed)
    prompt = model.prompt
    if isinstance(prompt, DeepPrompt) and prompt.reparam_hidden is not None:
        # The MLP keeps PyTorch's (fan-in scaled) initialisation, seeded; N(0, 1) weights would blow up.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in prompt.mlp:
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
            prompt.embedding.copy_(torch.randn(prompt.embedding.shape))
        if cfg.init == "random":
            return
    elif cfg.init == "random":
        for p in prompt.parameters():
            p.copy_(torch.randn(p.shape, generator=g).to(p.device))
        return
    if cfg.init == "vocab":
        assert isinstance(prompt, InputPrompt)
        prompt.init_from_vocab(model.lm, g)
        return
    if batch is None:
        raise ValueError("init 'activations' needs a batch of training inputs")
    dev = next(model.lm.parameters()).device
    tokens, mask = batch.prefixes()
    prompt.init_from_activations(model.lm, tokens.to(dev), mask.to(dev), g)


def activation_batch(collator: Any, examples: Sequence[TaskExample], n: int = 64,
                     seed: int = 0) -> PromptBatch:
    """A seeded random sample of ``n`` training examples, collated: the inputs whose activations
    initialise the prompt (``init="activations"``)."""
    if not examples:
        raise ValueError("activation_batch: no examples")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(examples), generator=g)[:n].tolist()
    return collator([examples[i] for i in pick])


def build_prompted(lm: UnitLM, spec: TaskSpec, verbalizer: Verbalizer, cfg: PromptConfig | None = None,
                   init_batch: PromptBatch | None = None, seed: int = 0) -> PromptedULM:
    """Freeze ``lm`` and wrap it with a freshly initialised prompt (same seed -> same numbers)."""
    cfg = cfg or PromptConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        prompt = make_prompt(lm, cfg).to(next(lm.parameters()).device)
        separator = None
        if cfg.separator_init == "random":  # SpeechPrompt: nn.Embedding(1, d), N(0, 1)
            separator = torch.randn(lm.cfg.dim)
    model = PromptedULM(lm, spec, verbalizer.to(next(lm.parameters()).device), prompt, separator)
    init_prompt(model, cfg, init_batch, seed)
    return model

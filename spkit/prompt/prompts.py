"""Trainable prompts for the frozen uLM (:class:`spkit.ulm.UnitLM` hooks).

* :class:`InputPrompt` (method ``input_prompt``): L vectors (L, d) placed before the token embeddings
  (``input_prompts`` hook: no position, no sqrt(d) scale).
* :class:`DeepPrompt`: per-layer prefixes of length L that every query of every layer attends to, in three
  forms (the method names of results.json):

  - ``deep_prompt`` -- SpeechPrompt's form (v1 ``transformer_lm_big_prompt``, v2 ``GSLM_SpeechPrompt_v1``):
    per layer, separate key prompts and value prompts (n_layers, 2, L, d), the *inputs* of that layer's
    frozen k_proj and v_proj at the L prompt slots, plus SpeechPrompt's input prompt (L, d) in those slots.
    Its keys and values are replaced by the deep prompts in every layer, so it reaches no token's output:
    it is counted, as SpeechPrompt counts it, but receives exactly zero gradient (:meth:`dead_parameters`).
    Trainable values: ``(2 * n_layers + 1) * L * d`` (the separator's d comes on top: IC, L=6 on GSLM's
    uLM: 154,624 with it, SpeechPrompt's logged "num. trained").
  - ``deep_prompt_tied`` -- an ablation: one (n_layers, L, d) input per layer and slot feeds both
    projections (``n_layers * L * d``).
  - ``prefix_prompt`` -- PEFT prefix tuning: post-projection keys and values (n_layers, 2, H, L, d_head)
    (``prefix_kv`` hook).

  With ``reparam_hidden`` the prefixes are produced by an MLP from an (L, d) embedding, as PEFT does to
  stabilise training; :meth:`DeepPrompt.materialize` folds the MLP away (its output becomes the plain
  parameter), which is what a prompt file stores.

Prompt dropout (``dropout``, SpeechPrompt: 0.1 on its input, key and value prompts) applies in training mode
only. Initialisation (``init``): ``random`` (N(0, 1), SpeechPrompt's ``nn.Embedding`` default; the k/v
inputs are LayerNorm outputs, ~unit variance), ``vocab`` (input prompts only: random rows of the LM's scaled
embedding) or ``activations``: run the frozen LM on real training inputs and copy the per-layer k/v inputs
(or keys and values) at randomly chosen real token positions (:meth:`DeepPrompt.init_from_activations`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spkit.ulm.model import UnitLM

FORMS: tuple[str, ...] = ("deep_prompt", "deep_prompt_tied", "prefix_prompt")
# Prompt files written before the forms had these names: what each old name is now.
LEGACY_FORMS: dict[str, str] = {"speechprompt": "deep_prompt_tied", "peft": "prefix_prompt"}


class InputPrompt(nn.Module):
    """L trainable vectors before the tokens. ``weight``: (L, d)."""

    def __init__(self, length: int, dim: int, dropout: float = 0.0):
        super().__init__()
        if length < 1:
            raise ValueError(f"InputPrompt: length must be >= 1, got {length}")
        self.length, self.dim, self.dropout = int(length), int(dim), float(dropout)
        self.weight = nn.Parameter(torch.randn(self.length, self.dim))

    def hook_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`UnitLM.forward`: ``input_prompts`` (L, d)."""
        return {"input_prompts": F.dropout(self.weight, self.dropout, self.training)}

    def dead_parameters(self) -> list[str]:
        return []

    @torch.no_grad()
    def init_from_activations(self, lm: UnitLM, tokens: Tensor, padding_mask: Tensor,
                              generator: torch.Generator | None = None) -> None:
        """Copy the LM's scaled token embeddings + positions at random real positions of ``tokens`` (B, T):
        what the first layer normally sees there."""
        out = lm(tokens, padding_mask=padding_mask, return_hidden=True)
        assert out.hidden_states is not None
        self.weight.copy_(_pick_positions(out.hidden_states[0], padding_mask, self.length, generator))

    @torch.no_grad()
    def init_from_vocab(self, lm: UnitLM, generator: torch.Generator | None = None) -> None:
        """Random rows of the LM's (scaled) token embedding."""
        rows = torch.randint(4, lm.cfg.vocab_size, (self.length,), generator=generator)
        self.weight.copy_(lm.embed_scale * lm.embed_tokens.weight[rows.to(lm.embed_tokens.weight.device)])

    def config(self) -> dict[str, Any]:
        return {"type": "input", "length": self.length, "dim": self.dim, "dropout": self.dropout}


def _pick_positions(states: Tensor, padding_mask: Tensor | None, n: int,
                    generator: torch.Generator | None) -> Tensor:
    """n vectors of ``states`` (B, T, ...) at random real (non-pad) positions -> (n, ...)."""
    B, T = states.shape[:2]
    valid = torch.ones(B, T, dtype=torch.bool) if padding_mask is None else ~padding_mask.cpu()
    flat = valid.reshape(-1).nonzero()[:, 0]
    if flat.numel() == 0:
        raise ValueError("init from activations: the batch has no real tokens")
    pick = flat[torch.randint(0, flat.numel(), (n,), generator=generator)]
    return states.reshape(B * T, *states.shape[2:])[pick.to(states.device)].clone()


class DeepPrompt(nn.Module):
    """Per-layer prefixes of length L in one of :data:`FORMS`, optionally MLP-reparameterised.

    Parameters without reparameterisation:
        ``deep_prompt``: ``prefix`` (n_layers, 2, L, d): k_proj inputs (index 0) and v_proj inputs (1);
            ``input`` (L, d): SpeechPrompt's input prompt in the same slots (dead, see the module docstring).
        ``deep_prompt_tied``: ``prefix`` (n_layers, L, d), inputs of both frozen projections.
        ``prefix_prompt``: ``prefix`` (n_layers, 2, H, L, d_head), post-projection keys (0) and values (1).
    With ``reparam_hidden = h``: ``embedding`` (L, d) and an MLP d -> h -> (size of one position's prefix
    across layers), Tanh in between (PEFT's choice); :meth:`materialize` replaces them by ``prefix``.
    """

    def __init__(self, n_layers: int, length: int, dim: int, n_heads: int, form: str = "deep_prompt",
                 reparam_hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        form = LEGACY_FORMS.get(form, form)
        if form not in FORMS:
            raise ValueError(f"DeepPrompt: form {form!r} is not one of {FORMS}")
        if length < 1:
            raise ValueError(f"DeepPrompt: length must be >= 1, got {length}")
        if dim % n_heads:
            raise ValueError(f"DeepPrompt: dim {dim} is not divisible by n_heads {n_heads}")
        self.n_layers, self.length = int(n_layers), int(length)
        self.dim, self.n_heads = int(dim), int(n_heads)
        self.form, self.dropout = form, float(dropout)
        self.reparam_hidden = reparam_hidden
        if reparam_hidden is None:
            self.prefix = nn.Parameter(torch.randn(*self.prefix_shape))
        else:
            per_position = self.n_layers * (1 if form == "deep_prompt_tied" else 2) * dim
            self.embedding = nn.Parameter(torch.randn(self.length, dim))
            self.mlp = nn.Sequential(nn.Linear(dim, int(reparam_hidden)), nn.Tanh(),
                                     nn.Linear(int(reparam_hidden), per_position))
        if form == "deep_prompt":
            self.input = nn.Parameter(torch.randn(self.length, dim))

    @property
    def prefix_shape(self) -> tuple[int, ...]:
        if self.form == "deep_prompt":
            return (self.n_layers, 2, self.length, self.dim)
        if self.form == "deep_prompt_tied":
            return (self.n_layers, self.length, self.dim)
        return (self.n_layers, 2, self.n_heads, self.length, self.dim // self.n_heads)

    def prefixes(self) -> Tensor:
        """The prefix tensor in :attr:`prefix_shape` (through the MLP when reparameterised)."""
        if self.reparam_hidden is None:
            return self.prefix
        out = self.mlp(self.embedding)  # (L, n_layers * [2 *] d)
        if self.form == "deep_prompt":
            return out.view(self.length, self.n_layers, 2, self.dim).permute(1, 2, 0, 3)
        if self.form == "deep_prompt_tied":
            return out.view(self.length, self.n_layers, self.dim).permute(1, 0, 2)
        H, dh = self.n_heads, self.dim // self.n_heads
        return out.view(self.length, self.n_layers, 2, H, dh).permute(1, 2, 3, 0, 4)

    def dead_parameters(self) -> list[str]:
        """Names of parameters that cannot reach the output (zero gradient): the deep_prompt form's input
        prompt, whose keys and values the deep prompts replace in every layer (as in SpeechPrompt)."""
        return ["input"] if self.form == "deep_prompt" else []

    def hook_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`UnitLM.forward`: ``deep_prompts`` (per layer a (key, value) input
        pair, or one tied input, (L, d) each) or ``prefix_kv`` (per layer (keys, values), (H, L, d_head))."""
        p = F.dropout(self.prefixes(), self.dropout, self.training)
        if self.form == "deep_prompt":
            return {"deep_prompts": [(p[i, 0], p[i, 1]) for i in range(self.n_layers)],
                    "input_prompts": F.dropout(self.input, self.dropout, self.training),
                    "input_prompt_keys": False}
        if self.form == "deep_prompt_tied":
            return {"deep_prompts": list(p.unbind(0))}
        return {"prefix_kv": [(p[i, 0], p[i, 1]) for i in range(self.n_layers)]}

    @torch.no_grad()
    def activation_targets(self, lm: UnitLM, tokens: Tensor, padding_mask: Tensor,
                           generator: torch.Generator | None = None) -> Tensor:
        """Prefix values (:attr:`prefix_shape`) taken from the frozen LM's own activations on real inputs.

        Each layer draws its own L random real positions of ``tokens`` (B, T); deep_prompt and
        deep_prompt_tied take the layer-normed k/v inputs there (d; deep_prompt's key and value inputs come
        from the same positions), prefix_prompt the keys and values (H, d_head each).
        """
        out = lm(tokens, padding_mask=padding_mask, return_layer_states=True)
        assert out.attn_inputs is not None and out.keys_values is not None
        layers = []
        for i in range(self.n_layers):
            if self.form == "deep_prompt_tied":
                layers.append(_pick_positions(out.attn_inputs[i], padding_mask, self.length, generator))
            elif self.form == "deep_prompt":
                picked = _pick_positions(out.attn_inputs[i], padding_mask, self.length, generator)
                layers.append(torch.stack([picked, picked]))
            else:
                k, v = out.keys_values[i]  # (B, H, T, dh) -> (B, T, 2, H, dh)
                kv = torch.stack([k, v], dim=1).permute(0, 3, 1, 2, 4)
                picked = _pick_positions(kv, padding_mask, self.length, generator)  # (L, 2, H, dh)
                layers.append(picked.permute(1, 2, 0, 3))
        return torch.stack(layers).float()

    @torch.no_grad()
    def init_from_activations(self, lm: UnitLM, tokens: Tensor, padding_mask: Tensor,
                              generator: torch.Generator | None = None) -> None:
        """Initialise the prefixes from the LM's activations (see :meth:`activation_targets`).

        Reparameterised: the MLP's last layer is solved (minimum-norm least squares on the hidden layer's
        outputs for the current embedding) so that the MLP outputs those activations: exactly when
        ``reparam_hidden >= L``, the best fit otherwise; its bias is their mean over positions.
        """
        target = self.activation_targets(lm, tokens, padding_mask, generator).to(self._param_device())
        if self.reparam_hidden is None:
            self.prefix.copy_(target)
            return
        if self.form == "deep_prompt":
            per_pos = target.permute(2, 0, 1, 3).reshape(self.length, -1)
        elif self.form == "deep_prompt_tied":
            per_pos = target.permute(1, 0, 2).reshape(self.length, -1)
        else:
            per_pos = target.permute(3, 0, 1, 2, 4).reshape(self.length, -1)
        last = self.mlp[2]
        assert isinstance(last, nn.Linear)
        mean = per_pos.mean(0)
        hidden = self.mlp[1](self.mlp[0](self.embedding))  # (L, h)
        # Minimum-norm least squares: the MLP reproduces the activations exactly when h >= L.
        last.weight.copy_((torch.linalg.pinv(hidden) @ (per_pos - mean)).T)
        last.bias.copy_(mean)

    def _param_device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def materialize(self) -> DeepPrompt:
        """A plain (non-reparameterised) DeepPrompt with the same prefixes: the MLP folded away."""
        out = DeepPrompt(self.n_layers, self.length, self.dim, self.n_heads, self.form, None, self.dropout)
        out = out.to(self._param_device())
        out.prefix.copy_(self.prefixes().detach())
        if self.form == "deep_prompt":
            out.input.copy_(self.input)
        out.train(self.training)
        return out

    def config(self) -> dict[str, Any]:
        return {"type": "deep", "n_layers": self.n_layers, "length": self.length, "dim": self.dim,
                "n_heads": self.n_heads, "form": self.form, "reparam_hidden": self.reparam_hidden,
                "dropout": self.dropout}


def prompt_from_config(cfg: dict[str, Any]) -> InputPrompt | DeepPrompt:
    """Rebuild an (uninitialised) prompt module from its :meth:`config` (old form names are mapped by
    :data:`LEGACY_FORMS`)."""
    kind = cfg.get("type")
    if kind == "input":
        return InputPrompt(cfg["length"], cfg["dim"], cfg.get("dropout", 0.0))
    if kind == "deep":
        return DeepPrompt(cfg["n_layers"], cfg["length"], cfg["dim"], cfg["n_heads"], cfg["form"],
                          cfg.get("reparam_hidden"), cfg.get("dropout", 0.0))
    raise ValueError(f"unknown prompt type {kind!r} (expected 'input' or 'deep')")

"""Trainable prompts for the frozen uLM (:class:`spkit.ulm.UnitLM` hooks).

* :class:`InputPrompt`: L vectors (L, d) placed before the token embeddings (``input_prompts`` hook:
  no position, no sqrt(d) scale).
* :class:`DeepPrompt`: per-layer prefixes of length L that every query of every layer attends to, in two
  forms:

  - ``speechprompt``: (n_layers, L, d) vectors that are the *inputs* of each layer's frozen k/v projections
    (``deep_prompts`` hook), as in SpeechPrompt;
  - ``peft``: post-projection keys and values (n_layers, 2, H, L, d_head) (``prefix_kv`` hook), as in PEFT
    prefix tuning.

  With ``reparam_hidden`` the prefixes are produced by an MLP from an (L, d) embedding, as PEFT does to
  stabilise training; :meth:`DeepPrompt.materialize` folds the MLP away (its output becomes the plain
  parameter), which is what a prompt file stores.

Initialisation (``init``): ``random`` (N(0, 1): the k/v inputs are LayerNorm outputs, ~unit variance;
PEFT keys/values get N(0, 1) too), ``vocab``
(input prompts only: random rows of the LM's scaled embedding) or -- the default, a prototype finding --
``activations``: run the frozen LM on real training inputs and copy the per-layer k/v inputs (or keys and
values) at randomly chosen real token positions (:meth:`DeepPrompt.init_from_activations`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spkit.ulm.model import UnitLM

FORMS: tuple[str, ...] = ("speechprompt", "peft")


class InputPrompt(nn.Module):
    """L trainable vectors before the tokens. ``weight``: (L, d)."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        if length < 1:
            raise ValueError(f"InputPrompt: length must be >= 1, got {length}")
        self.length, self.dim = int(length), int(dim)
        self.weight = nn.Parameter(torch.randn(self.length, self.dim))

    def hook_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`UnitLM.forward`: ``input_prompts`` (L, d)."""
        return {"input_prompts": self.weight}

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
        return {"type": "input", "length": self.length, "dim": self.dim}


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
    """Per-layer prefixes of length L, SpeechPrompt or PEFT form, optionally MLP-reparameterised.

    Parameters without reparameterisation:
        ``speechprompt``: ``prefix`` (n_layers, L, d), inputs of the frozen k/v projections.
        ``peft``: ``prefix`` (n_layers, 2, H, L, d_head), post-projection keys (index 0) and values (1).
    With ``reparam_hidden = h``: ``embedding`` (L, d) and an MLP d -> h -> (size of one position's prefix
    across layers), Tanh in between (PEFT's choice); :meth:`materialize` replaces them by ``prefix``.
    """

    def __init__(self, n_layers: int, length: int, dim: int, n_heads: int, form: str = "speechprompt",
                 reparam_hidden: int | None = None):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"DeepPrompt: form {form!r} is not one of {FORMS}")
        if length < 1:
            raise ValueError(f"DeepPrompt: length must be >= 1, got {length}")
        if dim % n_heads:
            raise ValueError(f"DeepPrompt: dim {dim} is not divisible by n_heads {n_heads}")
        self.n_layers, self.length = int(n_layers), int(length)
        self.dim, self.n_heads = int(dim), int(n_heads)
        self.form = form
        self.reparam_hidden = reparam_hidden
        if reparam_hidden is None:
            self.prefix = nn.Parameter(torch.randn(*self.prefix_shape))
        else:
            per_position = self.n_layers * (1 if form == "speechprompt" else 2) * dim
            self.embedding = nn.Parameter(torch.randn(self.length, dim))
            self.mlp = nn.Sequential(nn.Linear(dim, int(reparam_hidden)), nn.Tanh(),
                                     nn.Linear(int(reparam_hidden), per_position))

    @property
    def prefix_shape(self) -> tuple[int, ...]:
        if self.form == "speechprompt":
            return (self.n_layers, self.length, self.dim)
        return (self.n_layers, 2, self.n_heads, self.length, self.dim // self.n_heads)

    def prefixes(self) -> Tensor:
        """The prefix tensor in :attr:`prefix_shape` (through the MLP when reparameterised)."""
        if self.reparam_hidden is None:
            return self.prefix
        out = self.mlp(self.embedding)  # (L, n_layers * [2 *] d)
        if self.form == "speechprompt":
            return out.view(self.length, self.n_layers, self.dim).permute(1, 0, 2)
        H, dh = self.n_heads, self.dim // self.n_heads
        return out.view(self.length, self.n_layers, 2, H, dh).permute(1, 2, 3, 0, 4)

    def hook_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`UnitLM.forward`: ``deep_prompts`` (n_layers x (L, d)) or
        ``prefix_kv`` (n_layers x (keys, values), each (H, L, d_head))."""
        p = self.prefixes()
        if self.form == "speechprompt":
            return {"deep_prompts": list(p.unbind(0))}
        return {"prefix_kv": [(p[i, 0], p[i, 1]) for i in range(self.n_layers)]}

    @torch.no_grad()
    def activation_targets(self, lm: UnitLM, tokens: Tensor, padding_mask: Tensor,
                           generator: torch.Generator | None = None) -> Tensor:
        """Prefix values (:attr:`prefix_shape`) taken from the frozen LM's own activations on real inputs.

        Each layer draws its own L random real positions of ``tokens`` (B, T); speechprompt takes the
        layer-normed k/v inputs there (d), peft the keys and values (H, d_head each).
        """
        out = lm(tokens, padding_mask=padding_mask, return_layer_states=True)
        assert out.attn_inputs is not None and out.keys_values is not None
        layers = []
        for i in range(self.n_layers):
            if self.form == "speechprompt":
                layers.append(_pick_positions(out.attn_inputs[i], padding_mask, self.length, generator))
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
        if self.form == "speechprompt":
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
        out = DeepPrompt(self.n_layers, self.length, self.dim, self.n_heads, self.form, None)
        out = out.to(self._param_device())
        out.prefix.copy_(self.prefixes().detach())
        return out

    def config(self) -> dict[str, Any]:
        return {"type": "deep", "n_layers": self.n_layers, "length": self.length, "dim": self.dim,
                "n_heads": self.n_heads, "form": self.form, "reparam_hidden": self.reparam_hidden}


def prompt_from_config(cfg: dict[str, Any]) -> InputPrompt | DeepPrompt:
    """Rebuild an (uninitialised) prompt module from its :meth:`config`."""
    kind = cfg.get("type")
    if kind == "input":
        return InputPrompt(cfg["length"], cfg["dim"])
    if kind == "deep":
        return DeepPrompt(cfg["n_layers"], cfg["length"], cfg["dim"], cfg["n_heads"], cfg["form"],
                          cfg.get("reparam_hidden"))
    raise ValueError(f"unknown prompt type {kind!r} (expected 'input' or 'deep')")

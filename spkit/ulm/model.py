"""The unit language model (uLM): a causal Transformer LM with fairseq ``transformer_lm`` semantics.

With GSLM's checkpoint loaded (:mod:`spkit.ulm.fairseq_io`) this *is* GSLM's uLM: same logits as
fairseq to ~1e-6. Conventions (all from fairseq, verified numerically):

* tokens are indices into a fairseq dictionary: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, units
  from 4 (see :mod:`spkit.ulm.dictionary`); a sequence is fed as ``[</s>, u1..un]`` with target
  ``[u1..un, </s>]`` (``</s>`` doubles as BOS);
* input = ``sqrt(d) * embed(tokens) + sinusoid(position)``; the first real token has position
  ``pad_idx + 1 = 2``, pads get position ``pad_idx`` whose row is zero; the sinusoid table concatenates
  the sin half and the cos half with ``freq_i = exp(-i * ln(10000) / (d/2 - 1))``;
* pre-LayerNorm blocks (ReLU FFN), a final LayerNorm, output projection tied to the embedding, no bias.

Prompt hooks (all optional keyword arguments of :meth:`UnitLM.forward`, shapes documented there):

1. ``input_prompts`` (B, P, d): vectors placed before the token embeddings, with no position and no
   scaling (SpeechPrompt's input prompt). Token positions still start at 2, so with P=0 nothing changes.
2. deep prompts, two forms, both visible to every query of every layer (a prefix of the keys):
   ``deep_prompts`` -- per layer, the *inputs* of the frozen k_proj/v_proj at L prefix slots: a pair
   ``(key_inputs, value_inputs)`` each (B, L, d) (SpeechPrompt: separate key and value prompts, k_proj
   sees the first, v_proj the second), or one (B, L, d) tensor feeding both (the tied ablation). They
   stand where the layer-normed hidden states of L extra positions would be; the layer norm is *not*
   applied to them, and they are not queries;
   ``prefix_kv`` -- PEFT's form: per layer, post-projection ``(keys, values)`` each (B, H, L, d_head),
   like ``past_key_values`` (keys unscaled: the 1/sqrt(d_head) factor is applied to the queries' dot
   products, as in fairseq).
   ``input_prompt_keys=False`` reproduces SpeechPrompt's layout: its input prompt occupies the prompt
   slots, and in every layer the deep key/value prompts *replace* the keys and values those slots would
   compute. The input-prompt positions are then queries only; since their outputs are never read, the
   input prompt cannot change any token's output (it receives exactly zero gradient, as in SpeechPrompt).
3. ``token_embeds`` (B, T, d): the caller's *unscaled* embeddings, e.g. ``model.embed_tokens(tokens)``
   with some positions replaced by a trainable separator vector; forward scales them by sqrt(d) and adds
   positions exactly as it does for looked-up embeddings.
4. ``padding_mask`` (B, T), True at pads of right-padded batches: pads get position 1 and are never
   attended by real tokens; prefixes and input prompts are visible to every real token.

Key order in every layer: [KV cache, prefix_kv, deep_prompts, input prompts, tokens]; input-prompt and
token positions attend causally among themselves and to all prefixes. Prompts are given on the first call
only; with ``use_cache=True`` they become part of the returned cache.

Initialising deep prompts from the LM's own activations (L positions of a real utterance ``x``)::

    out = lm(x, return_layer_states=True)
    deep = [a[0, :L] for a in out.attn_inputs]                      # SpeechPrompt form, (L, d) each
    prefix = [(k[0, :, :L], v[0, :, :L]) for k, v in out.keys_values]  # PEFT form, (H, L, d_head) each

Helpers: :meth:`UnitLM.freeze`, :meth:`UnitLM.num_parameters`, :meth:`UnitLM.fingerprint`,
:meth:`UnitLM.generate` (greedy or sampled, top-k, temperature, KV cache), and
``forward(..., return_layer_states=True)`` for the per-layer activations of real inputs (to initialise
deep prompts from the LM's own activations).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

PAD_IDX = 1
EOS_IDX = 2


@dataclass
class ULMConfig:
    """Architecture of a :class:`UnitLM` (fairseq ``transformer_lm`` names in brackets).

    Attributes:
        vocab_size: dictionary size including the 4 specials and madeupword padding.
        dim: model width [decoder_embed_dim].
        n_layers: number of blocks [decoder_layers].
        n_heads: attention heads [decoder_attention_heads]; ``dim`` must be divisible by it.
        ffn_dim: hidden width of the feed-forward block [decoder_ffn_embed_dim].
        activation: ``relu`` (GSLM) or ``gelu`` [activation_fn].
        dropout: residual / embedding dropout [dropout].
        attention_dropout: dropout on attention probabilities [attention_dropout].
        activation_dropout: dropout after the FFN activation [activation_dropout].
        max_positions: longest sequence the model is meant for [tokens_per_sample]; the sinusoid table
            grows on demand, this only sets the training block size and the exported fairseq setting.
        scale_embedding: multiply embeddings by sqrt(dim) [not no_scale_embedding].
        tie_embeddings: output projection shares the embedding [share_decoder_input_output_embed].
        final_norm: LayerNorm after the last block [not no_decoder_final_norm].
        pad_idx: padding index (1 in fairseq dictionaries).
        eos_idx: end of sentence, also used as BOS (2).
        ln_eps: LayerNorm epsilon (fairseq: 1e-5).
    """

    vocab_size: int
    dim: int = 1024
    n_layers: int = 12
    n_heads: int = 16
    ffn_dim: int = 4096
    activation: str = "relu"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    max_positions: int = 3072
    scale_embedding: bool = True
    tie_embeddings: bool = True
    final_norm: bool = True
    pad_idx: int = PAD_IDX
    eos_idx: int = EOS_IDX
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"ULMConfig: dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"ULMConfig: activation {self.activation!r} not supported (relu, gelu)")
        if self.vocab_size <= max(self.pad_idx, self.eos_idx):
            raise ValueError(f"ULMConfig: vocab_size {self.vocab_size} is too small")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ULMConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"ULMConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


def ulm_tiny(vocab_size: int, **kw) -> ULMConfig:
    """d=128, 4 layers, 4 heads, FFN 512 (~0.8M parameters): the CPU-scale default."""
    return ULMConfig(
        vocab_size=vocab_size,
        **{"dim": 128, "n_layers": 4, "n_heads": 4, "ffn_dim": 512, "max_positions": 1024, **kw},
    )


def ulm_small(vocab_size: int, **kw) -> ULMConfig:
    """d=256, 6 layers, 4 heads, FFN 1024 (~4.8M parameters)."""
    return ULMConfig(
        vocab_size=vocab_size,
        **{"dim": 256, "n_layers": 6, "n_heads": 4, "ffn_dim": 1024, "max_positions": 1024, **kw},
    )


def transformer_lm(vocab_size: int, **kw) -> ULMConfig:
    """fairseq ``transformer_lm``: d=512, 6 layers, 8 heads, FFN 2048."""
    return ULMConfig(
        vocab_size=vocab_size,
        **{"dim": 512, "n_layers": 6, "n_heads": 8, "ffn_dim": 2048, "max_positions": 1024, **kw},
    )


def transformer_lm_big(vocab_size: int = 104, **kw) -> ULMConfig:
    """fairseq ``transformer_lm_big`` = GSLM's uLM: d=1024, 12 layers, 16 heads, FFN 4096 (~151M)."""
    return ULMConfig(
        vocab_size=vocab_size,
        **{"dim": 1024, "n_layers": 12, "n_heads": 16, "ffn_dim": 4096, "max_positions": 3072, **kw},
    )


CONFIGS = {
    "tiny": ulm_tiny,
    "small": ulm_small,
    "transformer_lm": transformer_lm,
    "transformer_lm_big": transformer_lm_big,
}


def sinusoid_table(n_positions: int, dim: int, pad_idx: int = PAD_IDX) -> Tensor:
    """fairseq's sinusoidal table (n_positions, dim): [sin | cos] halves, row ``pad_idx`` zero."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = torch.arange(n_positions, dtype=torch.float32)[:, None] * freq[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(n_positions, 1)], dim=1)
    table[pad_idx] = 0.0
    return table


@dataclass
class KVCache:
    """Keys/values of everything already processed, for incremental decoding.

    Attributes:
        keys, values: per layer (B, H, S, d_head); S counts deep-prompt prefixes, input prompts and tokens.
        key_mask: (B, S) bool, True where a key may be attended (False at pads).
        next_position: (B,) long, position id of the next real token (starts at pad_idx + 1).
    """

    keys: list[Tensor]
    values: list[Tensor]
    key_mask: Tensor
    next_position: Tensor

    @property
    def length(self) -> int:
        return self.key_mask.shape[1]


@dataclass
class ULMOutput:
    """What :meth:`UnitLM.forward` returns. T = token positions, P = input prompts, K = all keys.

    Attributes:
        logits: (B, T, V) for the token positions only (input-prompt positions dropped).
        hidden: (B, T, d) final hidden states (after the final LayerNorm), token positions.
        hidden_states: with ``return_hidden``: n_layers + 1 tensors (B, T, d): the residual stream
            entering each block, then ``hidden``.
        attentions: with ``return_attn``: per layer (B, H, P+T, K) probabilities, keys ordered as
            [cache, prefix_kv, deep_prompts, input prompts, tokens].
        attn_inputs: with ``return_layer_states``: per layer (B, T, d), the layer-normed input of
            k_proj/v_proj at the token positions (the SpeechPrompt-form deep prompt space).
        keys_values: with ``return_layer_states``: per layer (keys, values), each (B, H, T, d_head),
            post-projection (the PEFT-form prefix space).
        cache: with ``use_cache``: the :class:`KVCache` to pass to the next call.
    """

    logits: Tensor
    hidden: Tensor
    hidden_states: list[Tensor] | None = None
    attentions: list[Tensor] | None = None
    attn_inputs: list[Tensor] | None = None
    keys_values: list[tuple[Tensor, Tensor]] | None = None
    cache: KVCache | None = field(default=None, repr=False)


class SelfAttention(nn.Module):
    """Multi-head self-attention with q, k, v fused into one (3d, d) projection (q, k, v row blocks)."""

    def __init__(self, cfg: ULMConfig):
        super().__init__()
        self.n_heads, self.head_dim, self.dim = cfg.n_heads, cfg.head_dim, cfg.dim
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.attention_dropout = cfg.attention_dropout

    def _heads(self, x: Tensor) -> Tensor:
        """(B, T, d) -> (B, H, T, d_head)."""
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Frozen k_proj/v_proj applied to (B, L, d) inputs -> keys, values (B, H, L, d_head)."""
        w, b = self.qkv.weight[self.dim :], self.qkv.bias[self.dim :]
        k, v = F.linear(x, w, b).split(self.dim, dim=-1)
        return self._heads(k), self._heads(v)

    def project(self, x: Tensor, which: str) -> Tensor:
        """Frozen k_proj (``which="k"``) or v_proj (``"v"``) applied to (B, L, d) -> (B, H, L, d_head)."""
        i = {"k": 1, "v": 2}[which]
        sl = slice(i * self.dim, (i + 1) * self.dim)
        return self._heads(F.linear(x, self.qkv.weight[sl], self.qkv.bias[sl]))

    def forward(
        self,
        x: Tensor,
        past_k: Tensor | None,
        past_v: Tensor | None,
        mask: Tensor | None,
        is_causal: bool,
        capture: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """x (B, N, d); past_k/past_v (B, H, S, d_head) keys before x; mask (B, 1, N, S+N) bool.

        Returns (output (B, N, d), keys and values of past + x (B, H, S+N, d_head), probabilities
        (B, H, N, S+N) or None).
        """
        B, N, _ = x.shape
        q, k, v = self.qkv(x).split(self.dim, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        k_all = k if past_k is None else torch.cat([past_k, k], dim=2)
        v_all = v if past_v is None else torch.cat([past_v, v], dim=2)
        p_drop = self.attention_dropout if self.training else 0.0
        probs = None
        if capture:
            # Manual path: the probabilities are wanted, SDPA does not return them.
            scores = (q @ k_all.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if is_causal:
                mask = torch.ones(N, N, dtype=torch.bool, device=x.device).tril()
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probs = scores.softmax(dim=-1)
            y = F.dropout(probs, p_drop, self.training) @ v_all
        else:
            y = F.scaled_dot_product_attention(
                q, k_all, v_all, attn_mask=mask, dropout_p=p_drop, is_causal=is_causal
            )
        y = y.transpose(1, 2).reshape(B, N, self.dim)
        return self.out(y), k_all, v_all, probs


class Block(nn.Module):
    """Pre-LN Transformer block: x + attn(LN(x)), then x + fc2(act(fc1(LN(x))))."""

    def __init__(self, cfg: ULMConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.attn = SelfAttention(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.fc1 = nn.Linear(cfg.dim, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.dim)
        self.act = F.relu if cfg.activation == "relu" else F.gelu
        self.dropout, self.activation_dropout = cfg.dropout, cfg.activation_dropout

    def forward(
        self,
        x: Tensor,
        past_k: Tensor | None,
        past_v: Tensor | None,
        mask: Tensor | None,
        is_causal: bool,
        capture: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """x (B, N, d); past_k/past_v (B, H, S, d_head) keys before x (cache and prefixes); mask
        (B, 1, N, S+N) bool or None.

        Returns (output (B, N, d), attention input LN(x) (B, N, d), keys and values of all S+N positions
        (B, H, S+N, d_head), probabilities (B, H, N, S+N) when ``capture`` else None).
        """
        h = self.attn_norm(x)
        a, k_all, v_all, probs = self.attn(h, past_k, past_v, mask, is_causal, capture)
        x = x + F.dropout(a, self.dropout, self.training)
        f = self.act(self.fc1(self.ffn_norm(x)))
        f = self.fc2(F.dropout(f, self.activation_dropout, self.training))
        return x + F.dropout(f, self.dropout, self.training), h, k_all, v_all, probs


class UnitLM(nn.Module):
    """Causal Transformer LM over fairseq unit dictionaries (GSLM's uLM architecture).

    Parameter names: ``embed_tokens.weight`` (V, d); ``blocks.{i}.attn.qkv`` (3d, d) with q, k, v row
    blocks; ``blocks.{i}.attn.out``; ``blocks.{i}.{attn_norm,ffn_norm,fc1,fc2}``; ``final_norm``;
    ``output.weight`` (V, d) only when embeddings are untied.
    """

    def __init__(self, cfg: ULMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=cfg.pad_idx)
        self.embed_scale = math.sqrt(cfg.dim) if cfg.scale_embedding else 1.0
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps) if cfg.final_norm else nn.Identity()
        self.output = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # Not saved: recomputed from the config, grown on demand for long inputs.
        self.register_buffer(
            "positions_table",
            sinusoid_table(cfg.max_positions + cfg.pad_idx + 1, cfg.dim, cfg.pad_idx),
            persistent=False,
        )
        # Block-level activation checkpointing for training (off by default: it costs a second forward).
        self.checkpoint_activations = False
        self.reset_parameters()

    # ----------------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """fairseq's initialisation scheme (re-implemented).

        Embeddings ~ N(0, d^-1/2) with a zero pad row: after the sqrt(d) scale the inputs are ~N(0, 1),
        on the scale of the sinusoids, and the tied output logits start with std ~1 (initial perplexity
        ~V). N(0, 1) embeddings would give logits of std ~sqrt(d) (perplexity ~1e67 measured); std 0.02
        would drown the tokens under the positions at small d. Linear layers: Xavier-uniform (gain
        1/sqrt(2) for q, k, v, as fairseq), zero biases; LayerNorms at (1, 0).
        """
        d = self.cfg.dim
        nn.init.normal_(self.embed_tokens.weight, mean=0.0, std=d**-0.5)
        with torch.no_grad():
            self.embed_tokens.weight[self.cfg.pad_idx].zero_()
        for block in self.blocks:
            for i in range(3):  # q, k, v as separate (d, d) matrices, as fairseq initialises them
                nn.init.xavier_uniform_(block.attn.qkv.weight[i * d : (i + 1) * d], gain=2**-0.5)
            for lin in (block.attn.out, block.fc1, block.fc2):
                nn.init.xavier_uniform_(lin.weight)
            for lin in (block.attn.qkv, block.attn.out, block.fc1, block.fc2):
                nn.init.zeros_(lin.bias)
            for ln in (block.attn_norm, block.ffn_norm):
                nn.init.ones_(ln.weight)
                nn.init.zeros_(ln.bias)
        if isinstance(self.final_norm, nn.LayerNorm):
            nn.init.ones_(self.final_norm.weight)
            nn.init.zeros_(self.final_norm.bias)
        if self.output is not None:
            nn.init.normal_(self.output.weight, mean=0.0, std=d**-0.5)

    def freeze(self) -> UnitLM:
        """No gradients for any parameter and eval mode (no dropout); returns self."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count (tied embeddings counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def fingerprint(self) -> str:
        """sha256 hex of the config and every weight (as float32 bytes, in name order).

        Stable across devices, processes and dtype round trips of fp32 weights; a prompt file stores it
        and refuses to load onto a different uLM.
        """
        h = hashlib.sha256(json.dumps(self.cfg.to_dict(), sort_keys=True).encode())
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()

    # ----------------------------------------------------------------------------------------------
    def positions(self, valid: Tensor, start: Tensor | None = None) -> Tensor:
        """Position ids (B, T) for a (B, T) mask of real tokens: real tokens count up from ``start``
        (default pad_idx + 1 = 2; (B,) per row when continuing a cache), pads get pad_idx."""
        offset = (start - 1)[:, None] if start is not None else self.cfg.pad_idx
        pos = torch.cumsum(valid.long(), dim=1) + offset
        return torch.where(valid, pos, torch.full_like(pos, self.cfg.pad_idx))

    def _position_embeddings(self, pos: Tensor) -> Tensor:
        need = int(pos.max()) + 1
        if need > self.positions_table.shape[0]:
            self.positions_table = sinusoid_table(
                max(need, 2 * self.positions_table.shape[0]), self.cfg.dim, self.cfg.pad_idx
            ).to(self.positions_table.device)
        return self.positions_table[pos]

    def logits_from_hidden(self, h: Tensor) -> Tensor:
        """(B, T, d) final hidden states -> (B, T, V) logits (tied projection, no bias)."""
        w = self.embed_tokens.weight if self.output is None else self.output.weight
        return F.linear(h, w)

    def forward(
        self,
        tokens: Tensor | None = None,
        *,
        token_embeds: Tensor | None = None,
        padding_mask: Tensor | None = None,
        input_prompts: Tensor | None = None,
        deep_prompts: Sequence[Tensor | tuple[Tensor, Tensor]] | Tensor | None = None,
        prefix_kv: Sequence[tuple[Tensor, Tensor]] | None = None,
        input_prompt_keys: bool = True,
        cache: KVCache | None = None,
        use_cache: bool = False,
        return_hidden: bool = False,
        return_attn: bool = False,
        return_layer_states: bool = False,
        token_mask: Tensor | None = None,
        position_offsets: Tensor | None = None,
    ) -> ULMOutput:
        """Run the LM.

        Args:
            tokens: (B, T) long token indices (``[</s>, u1..un]`` for a whole utterance).
            token_embeds: (B, T, d) unscaled token embeddings instead of looking ``tokens`` up (hook 3);
                forward applies the sqrt(d) scale and positions. ``tokens`` is then optional.
            padding_mask: (B, T) bool, True at pads (right padding). Default: ``tokens == pad_idx``.
            input_prompts: (B, P, d) or (P, d) vectors before the tokens: no position, no scaling (hook 1).
            deep_prompts: per layer, a pair ``(key_inputs, value_inputs)`` each (B, L, d) or (L, d): the
                inputs of that layer's frozen k_proj and v_proj at L prefix positions (SpeechPrompt, hook 2);
                or one tensor per layer (or one (n_layers, B, L, d) tensor) feeding both (tied).
            input_prompt_keys: False: the input prompts are queries only, their keys and values replaced by
                the deep prompts (SpeechPrompt's layout; needs ``deep_prompts``).
            prefix_kv: n_layers pairs (keys, values), each (B, H, L, d_head) or (H, L, d_head):
                post-projection prefixes (PEFT prefix tuning, hook 2).
            cache: a :class:`KVCache` from a previous call: continue after it (prompts/prefixes must then
                be None: they are already in the cache).
            use_cache: return the updated cache in ``.cache``.
            return_hidden / return_attn / return_layer_states: fill the matching :class:`ULMOutput` fields.
            token_mask, position_offsets: continue a ``cache`` with several independent continuations packed
                into one row (scoring candidates without copying the cache per candidate): ``token_mask``
                (T, T) bool says which new tokens each new token sees (the cache is always visible; default
                causal) and ``position_offsets`` (T,) long gives each new token's position after the cache
                (default 0..T-1). Both together, with a cache, no padding and no ``use_cache``.

        Returns:
            :class:`ULMOutput` with ``logits`` (B, T, V) for the token positions only.
        """
        cfg = self.cfg
        if token_embeds is None:
            if tokens is None:
                raise ValueError("UnitLM.forward: give tokens or token_embeds")
            token_embeds = self.embed_tokens(tokens)
        B, T, _ = token_embeds.shape
        if padding_mask is None and tokens is not None and bool((tokens == cfg.pad_idx).any()):
            padding_mask = tokens == cfg.pad_idx
        if padding_mask is not None and padding_mask.shape != (B, T):
            raise ValueError(f"UnitLM.forward: padding_mask {tuple(padding_mask.shape)} != tokens {(B, T)}")
        if cache is not None and (
            input_prompts is not None or deep_prompts is not None or prefix_kv is not None
        ):
            raise ValueError(
                "UnitLM.forward: prompts go in the first call only; the cache already holds them"
            )
        device = token_embeds.device
        valid = (
            torch.ones(B, T, dtype=torch.bool, device=device)
            if padding_mask is None
            else ~padding_mask.to(device=device, dtype=torch.bool)
        )
        packed = token_mask is not None or position_offsets is not None
        if packed:
            if token_mask is None or position_offsets is None or cache is None or use_cache:
                raise ValueError("UnitLM.forward: token_mask and position_offsets go together, continue a "
                                 "cache and return no cache")
            if not bool(valid.all()) or token_mask.shape != (T, T) or position_offsets.shape != (T,):
                raise ValueError(f"UnitLM.forward: packed continuations need {T} unpadded tokens, a "
                                 f"({T}, {T}) token_mask and ({T},) position_offsets")
            pos = cache.next_position[:, None] + position_offsets.to(device)[None, :]
        else:
            pos = self.positions(valid, None if cache is None else cache.next_position)
        x = self.embed_scale * token_embeds + self._position_embeddings(pos).to(token_embeds.dtype)

        if not input_prompt_keys and (input_prompts is None or deep_prompts is None):
            raise ValueError("UnitLM.forward: input_prompt_keys=False needs input_prompts and deep_prompts")
        P = 0
        if input_prompts is not None:
            ip = _batched(input_prompts, B, 3)
            P = ip.shape[1]
            x = torch.cat([ip.to(x.dtype), x], dim=1)
            valid = torch.cat([torch.ones(B, P, dtype=torch.bool, device=device), valid], dim=1)
        x = F.dropout(x, cfg.dropout, self.training)
        N = P + T

        # Per-layer prefix keys/values (B, H, L, d_head), computed inside the loop for deep prompts.
        n_prefix = 0
        if prefix_kv is not None:
            if len(prefix_kv) != cfg.n_layers:
                raise ValueError(
                    f"UnitLM.forward: prefix_kv has {len(prefix_kv)} layers, model {cfg.n_layers}"
                )
            n_prefix += prefix_kv[0][0].shape[-2]
        if deep_prompts is not None:
            if len(deep_prompts) != cfg.n_layers:
                raise ValueError(
                    f"UnitLM.forward: deep_prompts has {len(deep_prompts)} layers, model {cfg.n_layers}"
                )
            first = deep_prompts[0]
            n_prefix += (first[0] if isinstance(first, (tuple, list)) else first).shape[-2]

        # Attention mask over keys [cache | prefixes | new]. None + is_causal for the common fast path.
        past_mask = (
            cache.key_mask if cache is not None else torch.zeros(B, 0, dtype=torch.bool, device=device)
        )
        old_mask = torch.cat([past_mask, torch.ones(B, n_prefix, dtype=torch.bool, device=device)], dim=1)
        # Which new positions may serve as keys: real ones, minus replaced input-prompt slots.
        key_valid = valid
        self_key = torch.eye(N, dtype=torch.bool, device=device)
        if not input_prompt_keys:
            key_valid = valid.clone()
            key_valid[:, :P] = False
            self_key[:P, :P] = False  # prompt-slot queries see the deep prompts, not themselves
        all_valid = bool(key_valid.all()) and bool(old_mask.all())
        is_causal = old_mask.shape[1] == 0 and all_valid and N > 1 and not packed
        mask = None
        if packed:
            assert token_mask is not None
            new = token_mask.to(device=device, dtype=torch.bool)[None].expand(B, N, N)
            mask = torch.cat([old_mask[:, None, :].expand(B, N, -1), new], dim=2)[:, None]
        elif not is_causal and not (all_valid and N == 1):
            causal = torch.ones(N, N, dtype=torch.bool, device=device).tril()
            # A pad key is visible only to itself, so no row is empty (no NaN) and real tokens skip pads.
            new = causal & (key_valid[:, None, :] | self_key)
            mask = torch.cat([old_mask[:, None, :].expand(B, N, -1), new], dim=2)[:, None]

        hidden_states: list[Tensor] = []
        attentions: list[Tensor] = []
        attn_inputs: list[Tensor] = []
        keys_values: list[tuple[Tensor, Tensor]] = []
        new_keys: list[Tensor] = []
        new_values: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if return_hidden:
                hidden_states.append(x[:, P:])
            past_k = [cache.keys[i]] if cache is not None else []
            past_v = [cache.values[i]] if cache is not None else []
            if prefix_kv is not None:
                pk, pv = prefix_kv[i]
                past_k.append(_batched(pk, B, 4).to(x.dtype))
                past_v.append(_batched(pv, B, 4).to(x.dtype))
            if deep_prompts is not None:
                dp = deep_prompts[i]
                # A prompt shared by the batch is projected once and broadcast (not B identical copies).
                if isinstance(dp, (tuple, list)):  # separate key and value inputs (SpeechPrompt)
                    dk = _batched(block.attn.project(_unbatched(dp[0], B).to(x.dtype), "k"), B, 4)
                    dv = _batched(block.attn.project(_unbatched(dp[1], B).to(x.dtype), "v"), B, 4)
                else:  # one input feeds both projections (tied)
                    kv = block.attn.project_kv(_unbatched(dp, B).to(x.dtype))
                    dk, dv = (_batched(t, B, 4) for t in kv)
                past_k.append(dk)
                past_v.append(dv)
            pk_all = torch.cat(past_k, dim=2) if past_k else None
            pv_all = torch.cat(past_v, dim=2) if past_v else None
            if self.checkpoint_activations and torch.is_grad_enabled() and not (
                use_cache or return_attn or return_layer_states
            ):
                # Keep only each block's input; recompute the block in backward. Prompts at layer 1 need
                # gradients through every layer, so without this all activations of the frozen LM live
                # until backward (about 1.75x the weights at GSLM's size, batch 8 x 200).
                x = torch.utils.checkpoint.checkpoint(
                    _block_output, block, x, pk_all, pv_all, mask, is_causal, use_reentrant=False
                )
                h = k_all = v_all = probs = None
            else:
                x, h, k_all, v_all, probs = block(x, pk_all, pv_all, mask, is_causal, return_attn)
            if return_attn:
                attentions.append(probs)
            if return_layer_states:
                attn_inputs.append(h[:, P:])
                keys_values.append((k_all[:, :, -T:], v_all[:, :, -T:]))
            if use_cache:
                new_keys.append(k_all)
                new_values.append(v_all)
        x = self.final_norm(x)[:, P:]
        if return_hidden:
            hidden_states.append(x)
        new_cache = None
        if use_cache:
            next_pos = (
                cache.next_position
                if cache is not None
                else torch.full((B,), cfg.pad_idx + 1, dtype=torch.long, device=device)
            )
            new_cache = KVCache(
                new_keys, new_values, torch.cat([old_mask, key_valid], dim=1), next_pos + valid[:, P:].sum(1)
            )
        return ULMOutput(
            logits=self.logits_from_hidden(x),
            hidden=x,
            hidden_states=hidden_states if return_hidden else None,
            attentions=attentions if return_attn else None,
            attn_inputs=attn_inputs if return_layer_states else None,
            keys_values=keys_values if return_layer_states else None,
            cache=new_cache,
        )

    # ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        tokens: Tensor,
        max_new_tokens: int,
        *,
        padding_mask: Tensor | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        greedy: bool = False,
        stop_at_eos: bool = True,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        **prompt_kwargs,
    ) -> Tensor:
        """Continue each prompt row with up to ``max_new_tokens`` tokens.

        Args:
            tokens: (B, T) prompt tokens, usually starting with ``</s>``; right-padded rows need
                ``padding_mask`` (B, T) True at pads (or pads equal to pad_idx): each row continues after
                its own last real token (positions and attention skip the pads).
            max_new_tokens: tokens to generate.
            temperature: divides the logits before sampling (ignored when greedy).
            top_k: sample among the k most likely tokens only.
            greedy: argmax instead of sampling.
            stop_at_eos: a row that emitted ``</s>`` is finished; its later outputs are pad_idx.
            use_cache: KV cache (O(T) per step); False recomputes the whole sequence each step (for checks
                and benchmarks). Both give the same tokens.
            generator: a ``torch.Generator`` for reproducible sampling.
            prompt_kwargs: ``input_prompts``, ``deep_prompts``, ``prefix_kv``, ``token_embeds`` as in forward.

        Returns:
            (B, max_new_tokens) long tensor of generated tokens.
        """
        cfg = self.cfg
        B = tokens.shape[0]
        if padding_mask is None:
            padding_mask = tokens == cfg.pad_idx
        out = torch.full((B, max_new_tokens), cfg.pad_idx, dtype=torch.long, device=tokens.device)
        done = torch.zeros(B, dtype=torch.bool, device=tokens.device)
        seq, seq_mask = tokens, padding_mask
        res = self(tokens, padding_mask=padding_mask, use_cache=use_cache, **prompt_kwargs)
        # Logits at each row's last real token.
        last = (~padding_mask).long().cumsum(1).argmax(1)
        logits = res.logits[torch.arange(B, device=tokens.device), last]
        token_embeds = prompt_kwargs.pop("token_embeds", None)
        for step in range(max_new_tokens):
            nxt = self._pick(logits, temperature, top_k, greedy, generator)
            nxt = torch.where(done, torch.full_like(nxt, cfg.pad_idx), nxt)
            out[:, step] = nxt
            if stop_at_eos:
                done = done | (nxt == cfg.eos_idx)
            if step == max_new_tokens - 1 or bool(done.all()):
                break
            new_pad = done[:, None] & (nxt[:, None] == cfg.pad_idx)
            if use_cache:
                res = self(nxt[:, None], padding_mask=new_pad, cache=res.cache, use_cache=True)
                logits = res.logits[:, -1]
            else:
                seq = torch.cat([seq, nxt[:, None]], dim=1)
                seq_mask = torch.cat([seq_mask, new_pad], dim=1)
                if token_embeds is not None:
                    token_embeds = torch.cat([token_embeds, self.embed_tokens(nxt[:, None])], dim=1)
                res = self(seq, padding_mask=seq_mask, token_embeds=token_embeds, **prompt_kwargs)
                logits = res.logits[:, -1]
        return out

    @staticmethod
    def _pick(
        logits: Tensor, temperature: float, top_k: int | None, greedy: bool, generator: torch.Generator | None
    ) -> Tensor:
        """(B, V) logits -> (B,) next tokens."""
        if greedy or temperature == 0:
            return logits.argmax(-1)
        logits = logits.float() / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def _unbatched(t: Tensor, B: int) -> Tensor:
    """A (L, d) or (1|B, L, d) prompt input as (1|B, L, d), checked against batch B."""
    t = t.unsqueeze(0) if t.dim() == 2 else t
    if t.dim() != 3 or t.shape[0] not in (1, B):
        raise ValueError(f"UnitLM: prompt tensor of shape {tuple(t.shape)} does not fit batch {B} "
                         "(3 dims with the batch)")
    return t


def _batched(t: Tensor, B: int, ndim: int) -> Tensor:
    """Broadcast a prompt tensor given without a batch dim, or with batch 1, to batch B (no copy)."""
    if t.dim() == ndim - 1:
        t = t.unsqueeze(0)
    if t.dim() != ndim or t.shape[0] not in (1, B):
        raise ValueError(
            f"UnitLM: prompt tensor of shape {tuple(t.shape)} does not fit batch {B} "
            f"({ndim} dims with the batch)"
        )
    return t.expand(B, *t.shape[1:])


def _block_output(block: Block, x: Tensor, pk: Tensor | None, pv: Tensor | None, mask: Tensor | None,
                  is_causal: bool) -> Tensor:
    """A block's hidden-state output alone (what activation checkpointing recomputes)."""
    return block(x, pk, pv, mask, is_causal, False)[0]


def lm_loss(logits: Tensor, targets: Tensor, pad_idx: int = PAD_IDX) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy over non-pad targets and their count.

    Args:
        logits: (B, T, V); targets: (B, T) long with pad_idx where no loss is wanted.
    Returns:
        (loss sum (scalar, float32), number of target tokens (scalar long)).
    """
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=pad_idx,
        reduction="sum",
    )
    return loss, (targets != pad_idx).sum()

"""fairseq interop for the unit LM: load GSLM / fairseq ``transformer_lm`` checkpoints into
:class:`~spkit.ulm.model.UnitLM`, and save a UnitLM as a checkpoint fairseq loads.

A GSLM uLM folder holds ``checkpoint_best.pt`` (top-level ``cfg`` or legacy ``args``, ``model`` state
dict, optimizer state) and ``dict.txt``.

Security: fairseq checkpoints pickle argparse / omegaconf objects, so :func:`load_fairseq_ulm` reads them
with ``torch.load(weights_only=False)``, which can run code embedded in the file. It does so only for the
file the caller names: load only checkpoints you trust.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spkit.errors import CheckpointError
from spkit.fairseq_compat import apply_numpy_shims, import_fairseq
from spkit.io import torch_save
from spkit.ulm.dictionary import UnitDictionary
from spkit.ulm.model import ULMConfig, UnitLM

# Keys fairseq checkpoints carry that hold no weights (old sinusoid buffer, module version marker).
IGNORED_KEYS = ("decoder.embed_positions._float_tensor", "decoder.version")


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a dict, omegaconf DictConfig or argparse Namespace."""
    if obj is None:
        return default
    if isinstance(obj, Mapping) or (hasattr(obj, "keys") and hasattr(obj, "get")):
        return obj.get(key, default)
    return getattr(obj, key, default)


def model_settings(state: Mapping[str, Any], source: str | os.PathLike = "<checkpoint>") -> Any:
    """The model section of a checkpoint: ``cfg["model"]`` (fairseq >= 0.10) or legacy ``args``."""
    cfg = state.get("cfg")
    model = _get(cfg, "model") if cfg is not None else None
    if model is None:
        model = state.get("args")
    if model is None:
        raise CheckpointError(source, "no 'cfg' or 'args' in the checkpoint: not a fairseq checkpoint")
    return model


def config_from_fairseq(
    model_cfg: Any, vocab_size: int, source: str | os.PathLike = "<checkpoint>"
) -> ULMConfig:
    """Translate fairseq ``transformer_lm`` settings into a :class:`ULMConfig`; refuse what spkit lacks."""
    arch = _get(model_cfg, "arch") or _get(model_cfg, "_name")
    if arch is not None and not str(arch).startswith("transformer_lm"):
        raise CheckpointError(source, f"architecture {arch!r} is not a fairseq transformer_lm")
    dim = int(_get(model_cfg, "decoder_embed_dim", 512))
    unsupported = {
        "decoder_normalize_before": (_get(model_cfg, "decoder_normalize_before", True), True),
        "decoder_learned_pos": (bool(_get(model_cfg, "decoder_learned_pos", False)), False),
        "no_token_positional_embeddings": (
            bool(_get(model_cfg, "no_token_positional_embeddings", False)),
            False,
        ),
        "adaptive_input": (bool(_get(model_cfg, "adaptive_input", False)), False),
        "adaptive_softmax_cutoff": (_get(model_cfg, "adaptive_softmax_cutoff", None) or None, None),
        "character_embeddings": (bool(_get(model_cfg, "character_embeddings", False)), False),
        "layernorm_embedding": (bool(_get(model_cfg, "layernorm_embedding", False)), False),
        "decoder_input_dim": (int(_get(model_cfg, "decoder_input_dim", dim) or dim), dim),
        "decoder_output_dim": (int(_get(model_cfg, "decoder_output_dim", dim) or dim), dim),
        "quant_noise_pq": (float(_get(model_cfg, "quant_noise_pq", 0) or 0), 0.0),
        "base_layers": (int(_get(model_cfg, "base_layers", 0) or 0), 0),
        "scale_fc": (bool(_get(model_cfg, "scale_fc", False)), False),
        "scale_attn": (bool(_get(model_cfg, "scale_attn", False)), False),
        "scale_heads": (bool(_get(model_cfg, "scale_heads", False)), False),
        "scale_resids": (bool(_get(model_cfg, "scale_resids", False)), False),
        "cross_self_attention": (bool(_get(model_cfg, "cross_self_attention", False)), False),
        "decoder_layers_to_keep": (_get(model_cfg, "decoder_layers_to_keep", None) or None, None),
        "add_bos_token": (bool(_get(model_cfg, "add_bos_token", False)), False),
        "alibi": (bool(_get(model_cfg, "alibi", False)), False),
    }
    bad = {k: got for k, (got, want) in unsupported.items() if got != want}
    if bad:
        raise CheckpointError(source, f"settings spkit's UnitLM does not implement: {bad}")
    activation = str(_get(model_cfg, "activation_fn", "relu"))
    if activation not in ("relu", "gelu"):
        raise CheckpointError(source, f"activation_fn {activation!r} is not supported (relu, gelu)")
    max_pos = _get(model_cfg, "max_target_positions") or _get(model_cfg, "tokens_per_sample") or 1024
    act_drop = _get(model_cfg, "activation_dropout", 0.0) or _get(model_cfg, "relu_dropout", 0.0) or 0.0
    try:
        return ULMConfig(
            vocab_size=vocab_size,
            dim=dim,
            n_layers=int(_get(model_cfg, "decoder_layers", 6)),
            n_heads=int(_get(model_cfg, "decoder_attention_heads", 8)),
            ffn_dim=int(_get(model_cfg, "decoder_ffn_embed_dim", 2048)),
            activation=activation,
            dropout=float(_get(model_cfg, "dropout", 0.1)),
            attention_dropout=float(_get(model_cfg, "attention_dropout", 0.0)),
            activation_dropout=float(act_drop),
            max_positions=int(max_pos),
            scale_embedding=not bool(_get(model_cfg, "no_scale_embedding", False)),
            tie_embeddings=bool(_get(model_cfg, "share_decoder_input_output_embed", False)),
            final_norm=not bool(_get(model_cfg, "no_decoder_final_norm", False)),
        )
    except ValueError as e:
        raise CheckpointError(source, str(e)) from None


# fairseq name (after ``decoder.layers.{i}.``) -> spkit name (after ``blocks.{i}.``); q/k/v handled apart.
_LAYER_MAP = {
    "self_attn.out_proj.weight": "attn.out.weight",
    "self_attn.out_proj.bias": "attn.out.bias",
    "self_attn_layer_norm.weight": "attn_norm.weight",
    "self_attn_layer_norm.bias": "attn_norm.bias",
    "fc1.weight": "fc1.weight",
    "fc1.bias": "fc1.bias",
    "fc2.weight": "fc2.weight",
    "fc2.bias": "fc2.bias",
    "final_layer_norm.weight": "ffn_norm.weight",
    "final_layer_norm.bias": "ffn_norm.bias",
}


def _expected_fairseq_keys(cfg: ULMConfig) -> set[str]:
    keys = {"decoder.embed_tokens.weight", "decoder.output_projection.weight"}
    if cfg.final_norm:
        keys |= {"decoder.layer_norm.weight", "decoder.layer_norm.bias"}
    for i in range(cfg.n_layers):
        p = f"decoder.layers.{i}."
        keys |= {p + k for k in _LAYER_MAP}
        keys |= {f"{p}self_attn.{x}_proj.{w}" for x in "qkv" for w in ("weight", "bias")}
    return keys


def state_dict_from_fairseq(
    sd: Mapping[str, Tensor], cfg: ULMConfig, source: str | os.PathLike = "<checkpoint>"
) -> dict[str, Tensor]:
    """Map a fairseq ``transformer_lm`` state dict onto spkit names, strictly.

    Only :data:`IGNORED_KEYS` may be extra; any other missing or unexpected key raises
    :class:`CheckpointError` naming the keys and ``source``.
    """
    expected = _expected_fairseq_keys(cfg)
    present = set(sd) - set(IGNORED_KEYS)
    missing, unexpected = sorted(expected - present), sorted(present - expected)
    if missing or unexpected:
        raise CheckpointError(
            source, f"state dict does not fit a {cfg.n_layers}-layer transformer_lm: "
            f"missing keys {missing[:10]}, unexpected keys {unexpected[:10]}"
        )
    out: dict[str, Tensor] = {"embed_tokens.weight": sd["decoder.embed_tokens.weight"]}
    if cfg.tie_embeddings:
        if not torch.equal(sd["decoder.output_projection.weight"], sd["decoder.embed_tokens.weight"]):
            raise CheckpointError(
                source, "share_decoder_input_output_embed is set but "
                "decoder.output_projection.weight differs from decoder.embed_tokens.weight"
            )
    else:
        out["output.weight"] = sd["decoder.output_projection.weight"]
    if cfg.final_norm:
        out["final_norm.weight"] = sd["decoder.layer_norm.weight"]
        out["final_norm.bias"] = sd["decoder.layer_norm.bias"]
    for i in range(cfg.n_layers):
        p = f"decoder.layers.{i}."
        for fk, sk in _LAYER_MAP.items():
            out[f"blocks.{i}.{sk}"] = sd[p + fk]
        for w in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{w}"] = torch.cat([sd[f"{p}self_attn.{x}_proj.{w}"] for x in "qkv"])
    return out


def state_dict_to_fairseq(model: UnitLM) -> dict[str, Tensor]:
    """spkit state dict -> fairseq ``transformer_lm`` names (with ``decoder.version`` as fairseq writes)."""
    cfg, sd = model.cfg, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    out: dict[str, Tensor] = {
        "decoder.version": torch.tensor([3.0]),
        "decoder.embed_tokens.weight": sd["embed_tokens.weight"],
    }
    out["decoder.output_projection.weight"] = sd[
        "embed_tokens.weight" if cfg.tie_embeddings else "output.weight"
    ]
    for i in range(cfg.n_layers):
        p = f"decoder.layers.{i}."
        for fk, sk in _LAYER_MAP.items():
            out[p + fk] = sd[f"blocks.{i}.{sk}"]
        for w in ("weight", "bias"):
            for x, t in zip("qkv", sd[f"blocks.{i}.attn.qkv.{w}"].chunk(3)):
                out[f"{p}self_attn.{x}_proj.{w}"] = t.clone()
    if cfg.final_norm:
        out["decoder.layer_norm.weight"] = sd["final_norm.weight"]
        out["decoder.layer_norm.bias"] = sd["final_norm.bias"]
    return out


def _find_checkpoint(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint file or folder")
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        if (path / name).is_file():
            return path / name
    pts = sorted(path.glob("*.pt"))
    if len(pts) == 1:
        return pts[0]
    raise FileNotFoundError(f"{path}: no checkpoint_best.pt (found {[p.name for p in pts]})")


def load_fairseq_ulm(
    path: str | os.PathLike,
    dict_path: str | os.PathLike | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[UnitLM, UnitDictionary]:
    """Load a GSLM / fairseq ``transformer_lm`` into spkit.

    Args:
        path: a checkpoint file, or a folder with ``checkpoint_best.pt`` (else ``checkpoint_last.pt``).
        dict_path: the ``dict.txt``; default: beside the checkpoint.
        map_location: where tensors go.

    Returns:
        (model in eval mode, dictionary). Raises :class:`CheckpointError` for unsupported settings or
        state-dict mismatches and :class:`~spkit.ulm.dictionary.VocabMismatchError` when ``dict.txt`` and the
        embedding disagree. Unpickles with ``weights_only=False``: trusted files only.
    """
    ckpt = _find_checkpoint(Path(path))
    dict_path = Path(dict_path) if dict_path is not None else ckpt.parent / "dict.txt"
    dictionary = UnitDictionary.load(dict_path)
    apply_numpy_shims()
    try:
        state = torch.load(ckpt, map_location=map_location, weights_only=False)
    except ModuleNotFoundError as e:
        raise CheckpointError(ckpt, f"unpickling needs module {e.name!r} (install fairseq)") from e
    except Exception as e:
        raise CheckpointError(ckpt, f"cannot be read as a torch checkpoint ({e})") from e
    if not isinstance(state, Mapping) or "model" not in state:
        raise CheckpointError(ckpt, "no 'model' state dict: not a fairseq checkpoint")
    sd = state["model"]
    if "decoder.embed_tokens.weight" not in sd:
        raise CheckpointError(ckpt, "no decoder.embed_tokens.weight: not a fairseq transformer_lm")
    dictionary.check_vocab(sd["decoder.embed_tokens.weight"].shape[0], dict_path, ckpt)
    cfg = config_from_fairseq(model_settings(state, ckpt), len(dictionary), ckpt)
    model = UnitLM(cfg)
    model.load_state_dict(state_dict_from_fairseq(sd, cfg, ckpt), strict=True)
    return model.to(map_location).eval(), dictionary


def fairseq_args(model: UnitLM, data: str | os.PathLike) -> argparse.Namespace:
    """fairseq training arguments describing ``model`` (parsed by fairseq's own parser)."""
    import_fairseq()
    from fairseq import options

    c = model.cfg
    argv = [
        str(data),
        "--task",
        "language_modeling",
        "--arch",
        "transformer_lm",
        "--decoder-layers",
        str(c.n_layers),
        "--decoder-embed-dim",
        str(c.dim),
        "--decoder-input-dim",
        str(c.dim),
        "--decoder-output-dim",
        str(c.dim),
        "--decoder-ffn-embed-dim",
        str(c.ffn_dim),
        "--decoder-attention-heads",
        str(c.n_heads),
        "--activation-fn",
        c.activation,
        "--dropout",
        str(c.dropout),
        "--attention-dropout",
        str(c.attention_dropout),
        "--activation-dropout",
        str(c.activation_dropout),
        "--tokens-per-sample",
        str(c.max_positions),
        "--decoder-normalize-before",
        "--criterion",
        "cross_entropy",
        "--optimizer",
        "adam",
        "--cpu",
    ]
    if c.tie_embeddings:
        argv.append("--share-decoder-input-output-embed")
    if not c.scale_embedding:
        argv.append("--no-scale-embedding")
    if not c.final_norm:
        argv.append("--no-decoder-final-norm")
    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, argv)


def save_fairseq_ulm(
    model: UnitLM,
    dictionary: UnitDictionary,
    folder: str | os.PathLike,
    checkpoint_name: str = "checkpoint_best.pt",
) -> Path:
    """Write ``folder/checkpoint_name`` + ``folder/dict.txt`` in fairseq's format (needs fairseq).

    ``fairseq.checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides={"data": folder})``
    loads the result (``cfg`` is stored as plain containers, so even ``weights_only=True`` reads it).
    Returns the checkpoint path.
    """
    if len(dictionary) != model.cfg.vocab_size:
        raise ValueError(
            f"save_fairseq_ulm: dictionary has {len(dictionary)} tokens, model vocab {model.cfg.vocab_size}"
        )
    folder = Path(folder)
    import_fairseq()
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    cfg = convert_namespace_to_omegaconf(fairseq_args(model, folder.resolve()))
    state = {
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": state_dict_to_fairseq(model),
        "optimizer_history": [
            {
                "criterion_name": "CrossEntropyCriterion",
                "optimizer_name": "Adam",
                "lr_scheduler_state": {"best": None},
                "num_updates": 0,
            }
        ],
        "extra_state": {"epoch": 1, "val_loss": None, "train_iterator": {"epoch": 1}},
        "last_optimizer_state": None,
        "task_state": {},
    }
    dictionary.save(folder / "dict.txt")
    return torch_save(state, folder / checkpoint_name)

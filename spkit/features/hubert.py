"""HuBERT features from a real checkpoint, run in torchaudio's ``Wav2Vec2Model`` (fairseq not needed).

Accepted checkpoint files (:func:`load_hubert_model` tells them apart):

* a **fairseq** HuBERT checkpoint such as ``hubert_base_ls960.pt``: a dict with ``cfg`` (or legacy
  ``args``), ``model`` (state dict) and ``task_state``. Its fairseq state dict is mapped onto
  torchaudio's parameter names here, and the architecture (any size: layers, widths, heads, conv
  stack, extractor mode, pre/post-LN) is read from the checkpoint's model config and passed to
  ``torchaudio.models.wav2vec2_model``. fairseq need not be installed: the fairseq classes pickled in
  the file (its ``Dictionary``) are unpickled as inert stand-ins.
* an **spkit HuBERT** file written by :func:`convert_fairseq_checkpoint`: ``{"format": "spkit.hubert",
  "version": 1, "config": wav2vec2_model kwargs, "normalize": bool, "state_dict": ...}``.
* a plain **torchaudio** state dict of ``torchaudio.models.hubert_base/large/xlarge()`` (the size is
  recognised from the embedding width and layer count).

Security: a fairseq checkpoint can only be read with full unpickling, which can run code stored in
the file. spkit does that only for files the user names, after a safe ``weights_only`` load fails:
**load trusted files only**. Convert once with :func:`convert_fairseq_checkpoint` to get a file that
loads with ``weights_only=True``.

Layer ``k`` (1-based) is fairseq's ``extract_features(output_layer=k)`` and torchaudio's
``extract_features(wave)[0][k - 1]``; GSLM uses layer 6 of HuBERT-Base. HuBERT is **not
padding-invariant** (the first conv's GroupNorm normalises over the whole input, padding included),
so :class:`HubertExtractor` encodes one clip at a time, or batches of equal-length clips only.
"""

from __future__ import annotations

import ast
import itertools
import os
import pickle
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torchaudio.models import wav2vec2_model

from spkit.errors import CheckpointError
from spkit.features.base import WINDOW, check_layer, check_wave, clip_cmvn, state_digest
from spkit.io import torch_save

SPKIT_FORMAT = "spkit.hubert"
SPKIT_VERSION = 1

# fairseq HubertConfig defaults, used for keys an older checkpoint's config lacks.
_FAIRSEQ_DEFAULTS: dict[str, Any] = {
    "extractor_mode": "default",
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_type": "transformer",
    "layer_norm_first": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "conv_pos_batch_norm": False,
}

# fairseq parameters that feature extraction does not use (pre-training heads).
_IGNORED_KEYS = re.compile(r"^(mask_emb|label_embs_concat|final_proj\.|target_glu\.)")


# --------------------------------------------------------------------------- reading the file
class _Stub:
    """Stand-in for a pickled fairseq object (e.g. ``fairseq.data.Dictionary``): keeps its state."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state


class _StubUnpickler(pickle.Unpickler):
    # Classes from fairseq are replaced by _Stub, so reading a fairseq checkpoint neither imports
    # fairseq (slow, needs NumPy shims) nor requires it to be installed.
    def find_class(self, module: str, name: str) -> Any:
        if module == "fairseq" or module.startswith("fairseq."):
            return type(name, (_Stub,), {"__module__": "spkit.features.hubert._stubs"})
        return super().find_class(module, name)


_stub_pickle = types.SimpleNamespace(
    Unpickler=_StubUnpickler, load=lambda f, **kw: _StubUnpickler(f, **kw).load(),
    __name__="spkit_stub_pickle")


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load`` a user-named checkpoint on the CPU: safely first, else with full unpickling.

    Full unpickling (needed by fairseq checkpoints) executes pickled code: trusted files only.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # holds non-tensor objects (fairseq Dictionary, argparse Namespace): trusted-file path
    except Exception as e:
        raise CheckpointError(path, f"not a PyTorch checkpoint ({type(e).__name__}: {e})") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_stub_pickle)
    except Exception as e:
        raise CheckpointError(path, f"cannot unpickle ({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------- fairseq -> torchaudio
def _section(cfg: Any, name: str) -> Any:
    if cfg is None:
        return None
    if isinstance(cfg, Mapping):
        return cfg.get(name)
    return getattr(cfg, name, None)


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    value = cfg.get(key, None) if isinstance(cfg, Mapping) else getattr(cfg, key, None)
    if value is None:
        return default if default is not None else _FAIRSEQ_DEFAULTS.get(key)
    return value


def _eval_layers(spec: str, path: str | os.PathLike) -> list[tuple[int, int, int]]:
    """Evaluate fairseq's ``conv_feature_layers`` string (list literals, ``+`` and ``*``) without eval()."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported syntax {type(node).__name__}")

    try:
        layers = ev(ast.parse(str(spec), mode="eval"))
        layers = [tuple(int(v) for v in layer) for layer in layers]
        if not layers or any(len(layer) != 3 for layer in layers):
            raise ValueError("expected [(dim, kernel, stride), ...]")
    except (SyntaxError, ValueError, TypeError) as e:
        raise CheckpointError(path, f"cannot read conv_feature_layers {spec!r}: {e}") from e
    return layers  # type: ignore[return-value]


def fairseq_config(model_cfg: Any, path: str | os.PathLike = "<checkpoint>") -> dict[str, Any]:
    """Keyword arguments of ``torchaudio.models.wav2vec2_model`` for a fairseq HuBERT model config.

    ``model_cfg`` is the checkpoint's ``cfg["model"]`` (dict or DictConfig) or legacy ``args``
    (argparse Namespace). Dropouts are zero: the model is for feature extraction.
    """
    name = _cfg_get(model_cfg, "_name", "hubert")
    if name != "hubert":
        raise CheckpointError(path, f"model is {name!r}, expected a HuBERT ('hubert') checkpoint")
    unsupported = {
        "layer_type": ("transformer", _cfg_get(model_cfg, "layer_type")),
        "activation_fn": ("gelu", _cfg_get(model_cfg, "activation_fn")),
        "conv_pos_batch_norm": (False, bool(_cfg_get(model_cfg, "conv_pos_batch_norm"))),
    }
    for key, (wanted, got) in unsupported.items():
        if got != wanted:
            raise CheckpointError(path, f"unsupported HuBERT variant: {key}={got!r} (need {wanted!r})")
    mode = _cfg_get(model_cfg, "extractor_mode")
    if mode not in ("default", "layer_norm"):
        raise CheckpointError(path, f"unknown extractor_mode {mode!r}")
    return {
        "extractor_mode": "group_norm" if mode == "default" else "layer_norm",
        "extractor_conv_layer_config": _eval_layers(_cfg_get(model_cfg, "conv_feature_layers"), path),
        "extractor_conv_bias": bool(_cfg_get(model_cfg, "conv_bias")),
        "encoder_embed_dim": int(_cfg_get(model_cfg, "encoder_embed_dim")),
        "encoder_projection_dropout": 0.0,
        "encoder_pos_conv_kernel": int(_cfg_get(model_cfg, "conv_pos")),
        "encoder_pos_conv_groups": int(_cfg_get(model_cfg, "conv_pos_groups")),
        "encoder_num_layers": int(_cfg_get(model_cfg, "encoder_layers")),
        "encoder_num_heads": int(_cfg_get(model_cfg, "encoder_attention_heads")),
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": int(_cfg_get(model_cfg, "encoder_ffn_embed_dim")),
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.0,
        "encoder_layer_norm_first": bool(_cfg_get(model_cfg, "layer_norm_first")),
        "encoder_layer_drop": 0.0,
    }


_KEY_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)$"),
     r"feature_extractor.conv_layers.\1.conv.\2"),
    # GroupNorm of the first conv ("default" mode) and the LayerNorms of "layer_norm" mode.
    (re.compile(r"^feature_extractor\.conv_layers\.0\.2\.(weight|bias)$"),
     r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)$"),
     r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (re.compile(r"^layer_norm\.(weight|bias)$"), r"encoder.feature_projection.layer_norm.\1"),
    (re.compile(r"^post_extract_proj\.(weight|bias)$"), r"encoder.feature_projection.projection.\1"),
    (re.compile(r"^encoder\.pos_conv\.0\.bias$"), "encoder.transformer.pos_conv_embed.conv.bias"),
    (re.compile(r"^encoder\.pos_conv\.0\.weight_g$"),
     "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0"),
    (re.compile(r"^encoder\.pos_conv\.0\.weight_v$"),
     "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"),
    (re.compile(r"^encoder\.pos_conv\.0\.parametrizations\.weight\.(original[01])$"),
     r"encoder.transformer.pos_conv_embed.conv.parametrizations.weight.\1"),
    (re.compile(r"^encoder\.layer_norm\.(weight|bias)$"), r"encoder.transformer.layer_norm.\1"),
    (re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.([qkv]|out)_proj\.(weight|bias)$"),
     r"encoder.transformer.layers.\1.attention.\2_proj.\3"),
    (re.compile(r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)$"),
     r"encoder.transformer.layers.\1.layer_norm.\2"),
    (re.compile(r"^encoder\.layers\.(\d+)\.fc1\.(weight|bias)$"),
     r"encoder.transformer.layers.\1.feed_forward.intermediate_dense.\2"),
    (re.compile(r"^encoder\.layers\.(\d+)\.fc2\.(weight|bias)$"),
     r"encoder.transformer.layers.\1.feed_forward.output_dense.\2"),
    (re.compile(r"^encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)$"),
     r"encoder.transformer.layers.\1.final_layer_norm.\2"),
]


def convert_fairseq_state_dict(state: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                               path: str | os.PathLike = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Rename a fairseq ``HubertModel`` state dict to ``wav2vec2_model(**config)`` parameter names.

    Pre-training heads (``mask_emb``, ``label_embs_concat``, ``final_proj``) are dropped; any other
    key that has no counterpart is an error naming the file. When the conv output width equals the
    encoder width fairseq has no ``post_extract_proj``; torchaudio always has one, so it becomes the
    identity.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _IGNORED_KEYS.match(key):
            continue
        for pattern, repl in _KEY_RULES:
            if pattern.match(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            raise CheckpointError(path, f"unknown HuBERT parameter {key!r}: not a fairseq HuBERT layout")
    proj = "encoder.feature_projection.projection"
    if f"{proj}.weight" not in out:
        width = int(config["extractor_conv_layer_config"][-1][0])
        if width != int(config["encoder_embed_dim"]):
            raise CheckpointError(path, "post_extract_proj missing although conv and encoder widths differ")
        out[f"{proj}.weight"] = torch.eye(width)
        out[f"{proj}.bias"] = torch.zeros(width)
    return out


def _build(config: Mapping[str, Any], state: Mapping[str, torch.Tensor],
           path: str | os.PathLike) -> torch.nn.Module:
    try:
        model = wav2vec2_model(**config, aux_num_out=None)
    except TypeError as e:
        raise CheckpointError(path, f"bad model config: {e}") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # missing / unexpected keys or shape mismatches
        raise CheckpointError(path, f"weights do not fit the configured model: {e}") from e
    return model.eval()


# torchaudio.models.hubert_base/large/xlarge, recognised in a plain state dict by (width, layers).
# Heads and pre/post-LN leave no trace in the weights' shapes, so they come from this table.
_TORCHAUDIO_SIZES: dict[tuple[int, int], dict[str, Any]] = {
    (768, 12): {"encoder_num_heads": 12, "encoder_layer_norm_first": False},
    (1024, 24): {"encoder_num_heads": 16, "encoder_layer_norm_first": True},
    (1280, 48): {"encoder_num_heads": 16, "encoder_layer_norm_first": True},
}
_BASE_STRIDES = {10: 5, 3: 2, 2: 2}  # kernel -> stride in HuBERT's conv stack


def _torchaudio_sized(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> dict[str, Any]:
    """Read a torchaudio HuBERT architecture off its state dict's shapes (plus the table above)."""
    dim = int(state["encoder.feature_projection.projection.weight"].shape[0])
    layers = 1 + max((int(m.group(1)) for k in state
                      if (m := re.match(r"encoder\.transformer\.layers\.(\d+)\.", k))), default=-1)
    sizes = _TORCHAUDIO_SIZES.get((dim, layers))
    if sizes is None:
        raise CheckpointError(path, f"a torchaudio state dict of d={dim}, {layers} layers matches no "
                                    "hubert_base/large/xlarge; save it in the spkit.hubert format instead")
    convs = []
    for i in itertools.count():
        w = state.get(f"feature_extractor.conv_layers.{i}.conv.weight")
        if w is None:
            break
        kernel = int(w.shape[2])
        if kernel not in _BASE_STRIDES:
            raise CheckpointError(path, f"conv layer {i} has kernel {kernel}: not a HuBERT conv stack")
        convs.append((int(w.shape[0]), kernel, _BASE_STRIDES[kernel]))
    pos = state["encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"]
    return {
        "extractor_mode": "layer_norm" if "feature_extractor.conv_layers.1.layer_norm.weight" in state
        else "group_norm",
        "extractor_conv_layer_config": convs,
        "extractor_conv_bias": "feature_extractor.conv_layers.0.conv.bias" in state,
        "encoder_embed_dim": dim, "encoder_projection_dropout": 0.0,
        "encoder_pos_conv_kernel": int(pos.shape[2]), "encoder_pos_conv_groups": dim // int(pos.shape[1]),
        "encoder_num_layers": layers, "encoder_num_heads": sizes["encoder_num_heads"],
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": int(
            state["encoder.transformer.layers.0.feed_forward.intermediate_dense.weight"].shape[0]),
        "encoder_ff_interm_dropout": 0.0, "encoder_dropout": 0.0,
        "encoder_layer_norm_first": sizes["encoder_layer_norm_first"], "encoder_layer_drop": 0.0,
    }


def load_hubert_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any], bool]:
    """Read any accepted HuBERT checkpoint (see the module doc).

    Returns ``(model, config, normalize)``: a torchaudio ``Wav2Vec2Model`` in eval mode, its
    ``wav2vec2_model`` kwargs, and whether waveforms are layer-normalised before encoding (fairseq's
    task ``normalize``: False for HuBERT-Base, True for Large/XLarge). Raises :class:`CheckpointError`
    naming the file for an unknown layout.
    """
    obj = read_checkpoint(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"unknown checkpoint layout: a {type(obj).__name__}, not a dict")
    if obj.get("format") == SPKIT_FORMAT:
        if obj.get("version") != SPKIT_VERSION:
            raise CheckpointError(path, f"spkit.hubert version {obj.get('version')!r} is not supported")
        config = dict(obj["config"])
        config["extractor_conv_layer_config"] = [tuple(c) for c in config["extractor_conv_layer_config"]]
        return _build(config, obj["state_dict"], path), config, bool(obj["normalize"])
    if "model" in obj and ("cfg" in obj or "args" in obj):
        cfg = obj.get("cfg")
        model_cfg = _section(cfg, "model") if cfg is not None else obj.get("args")
        task_cfg = _section(cfg, "task") if cfg is not None else obj.get("args")
        if model_cfg is None:
            raise CheckpointError(path, "unknown checkpoint layout: fairseq-like but without a model config")
        config = fairseq_config(model_cfg, path)
        state = convert_fairseq_state_dict(obj["model"], config, path)
        normalize = bool(_cfg_get(task_cfg, "normalize", False)) if task_cfg is not None else False
        return _build(config, state, path), config, normalize
    if "feature_extractor.conv_layers.0.conv.weight" in obj and all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        config = _torchaudio_sized(obj, path)
        # torchaudio's bundles normalise the waveform for Large/XLarge (pre-LN), as fairseq's tasks do.
        return _build(config, obj, path), config, bool(config["encoder_layer_norm_first"])
    keys = ", ".join(sorted(map(str, obj))[:8])
    raise CheckpointError(path, f"unknown checkpoint layout (top-level keys: {keys}); expected a fairseq "
                                "HuBERT checkpoint, an spkit.hubert file or a torchaudio HuBERT state dict")


def convert_fairseq_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write ``src`` (any accepted HuBERT checkpoint) as an ``spkit.hubert`` file at ``dst`` (atomic).

    The result holds only tensors and plain values, so it loads with ``weights_only=True`` and
    without fairseq.
    """
    model, config, normalize = load_hubert_model(src)
    convs = [list(c) for c in config["extractor_conv_layer_config"]]
    config = {**config, "extractor_conv_layer_config": convs}
    return torch_save({"format": SPKIT_FORMAT, "version": SPKIT_VERSION, "config": config,
                       "normalize": normalize, "state_dict": model.state_dict()}, dst)


# --------------------------------------------------------------------------- the extractor
class HubertExtractor:
    """Features of one HuBERT transformer layer at 50 Hz: ``(samples,)`` 16 kHz -> ``(frames, dim)``.

    Build with :meth:`from_checkpoint`. ``layer`` is 1-based (GSLM: 6). Outputs are float32 on the
    CPU whatever ``device`` the model runs on.
    """

    name = "hubert"

    def __init__(self, model: torch.nn.Module, config: Mapping[str, Any], layer: int, *,
                 normalize: bool = False, source: str = "<model>", digest: str = "",
                 device: str | torch.device = "cpu", cmvn: bool = False):
        self.model = model.to(device).eval()
        self.cmvn = bool(cmvn)  # per-clip mean/variance normalisation of the layer (GSLM: off)
        self.config = dict(config)
        self.num_layers = int(config["encoder_num_layers"])
        self.layer = check_layer(layer, self.num_layers, source)
        self.dim = int(config["encoder_embed_dim"])
        self.normalize = bool(normalize)
        self.source, self.digest = source, digest
        self.device = torch.device(device)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, layer: int = 6,
                        device: str | torch.device = "cpu", cmvn: bool = False) -> HubertExtractor:
        """Load a fairseq / spkit.hubert / torchaudio HuBERT file (trusted files only, see module doc)."""
        model, config, normalize = load_hubert_model(path)
        return cls(model, config, layer, normalize=normalize, source=str(path),
                   digest=state_digest(model), device=device, cmvn=cmvn)

    @property
    def fingerprint(self) -> str:
        return (f"hubert-{self.digest or 'unsaved'}-L{self.layer}-n{int(self.normalize)}"
                + ("-cmvn" if self.cmvn else ""))

    def with_layer(self, layer: int) -> HubertExtractor:
        """The same weights (shared, not copied), outputting ``layer``."""
        return HubertExtractor(self.model, self.config, layer, normalize=self.normalize,
                               source=self.source, digest=self.digest, device=self.device, cmvn=self.cmvn)

    def _layers(self, waves: torch.Tensor, num_layers: int) -> list[torch.Tensor]:
        waves = waves.to(self.device, torch.float32)
        if self.normalize:  # fairseq task.normalize: zero-mean unit-variance waveform per clip
            waves = torch.nn.functional.layer_norm(waves, waves.shape[-1:])
        with torch.inference_mode():
            feats, _ = self.model.extract_features(waves, num_layers=num_layers)
        return feats

    def extract_batch(self, waves: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` of **equal-length** clips -> ``(batch, frames, dim)`` (no padding)."""
        if waves.ndim != 2:
            raise ValueError(f"expected (batch, samples), got {tuple(waves.shape)}")
        if waves.shape[1] < WINDOW:  # shorter than one frame: no features (the convs would fail)
            return torch.zeros(waves.shape[0], 0, self.dim)
        x = self._layers(waves, self.layer)[self.layer - 1].float().cpu()
        return clip_cmvn(x) if self.cmvn else x

    def extract(self, wave: torch.Tensor) -> torch.Tensor:
        """``(samples,)`` at 16 kHz -> ``(frames, dim)``; frames = floor((N - 400) / 320) + 1 for Base."""
        return self.extract_batch(check_wave(wave)[None])[0]

    def extract_layers(self, wave: torch.Tensor) -> torch.Tensor:
        """All layers of one clip, raw (no ``cmvn``): ``(samples,)`` -> ``(num_layers, frames, dim)``."""
        wave = check_wave(wave)
        if wave.shape[0] < WINDOW:
            return torch.zeros(self.num_layers, 0, self.dim)
        feats = self._layers(wave[None], self.num_layers)
        return torch.stack([f[0] for f in feats]).float().cpu()

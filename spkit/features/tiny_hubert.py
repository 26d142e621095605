"""A small HuBERT trained here on the CPU: log-mel front end + transformer encoder + masked prediction.

Architecture (defaults, about 1.9 M parameters):

* **Front end**: 80-band log-mel, 25 ms window, 20 ms hop, no centre padding, so frame ``i`` covers
  samples ``[320 i, 320 i + 400)`` exactly like HuBERT-Base's conv stack and the frame count is
  :func:`~spkit.features.base.num_frames`. Bands are standardised with a global mean/std estimated
  on the training data (buffers of the model, saved with it). Why not HuBERT's waveform conv stack:
  in a throwaway prototype, torchaudio's conv front end at this size learned nothing useful in
  200 CPU-seconds, while the log-mel model processed 65-69 s of audio per CPU-second and its layer 2
  already beat MFCC units (KWS linear probe 78% vs 67%, frame NMI with words 0.17 vs 0.07).
* **Encoder**: linear projection to ``dim``, HuBERT's convolutional relative position embedding
  (grouped Conv1d over frames + GELU, added), LayerNorm, then ``layers`` post-LN transformer
  layers (HuBERT-Base's layout: every layer output is LayerNorm-ed, which suits k-means).
* **Masked prediction** (training only): span masks (each frame starts a span of ``mask_length``
  frames with probability ``mask_prob``; HuBERT: 0.08 x 10) replace the projected frames with a
  learned embedding; the head projects to ``final_dim`` and scores each cluster by cosine
  similarity with a learned cluster embedding divided by ``logit_temp`` (HuBERT's ``compute_nce``
  with all clusters as candidates).

The model is **padding-invariant**: the log-mel of a frame depends only on its own samples,
padded frames are zeroed before the position convolution and excluded from attention, so clips of
different lengths can be batched (:meth:`TinyHubertExtractor.extract_batch` with ``lengths``).

Checkpoint format (written by :mod:`spkit.features.pretrain`, read strictly by
:meth:`TinyHubertExtractor.from_checkpoint`, both with ``weights_only=True``)::

    {"format": "spkit.tiny_hubert", "version": 1,
     "config": {TinyHubertConfig fields}, "model": state_dict,
     "train": {PretrainConfig fields}, "targets": {"kind", "num_clusters", "centers", ...},
     "step": int, "optimizer": ..., "scheduler": ..., "history": [[step, loss, acc], ...],
     "seconds": float, "audio_seconds": float}
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from spkit.audio import SAMPLE_RATE
from spkit.features.base import HOP, WINDOW, check_layer, check_wave, clip_cmvn, state_digest

FORMAT = "spkit.tiny_hubert"
VERSION = 1


@dataclass
class TinyHubertConfig:
    """Architecture of :class:`TinyHubert` (saved in its checkpoint)."""

    n_mels: int = 80
    dim: int = 192
    layers: int = 4
    heads: int = 4
    ffn_dim: int = 768
    conv_pos: int = 32          # frames (640 ms) seen by the relative position convolution
    conv_pos_groups: int = 16
    dropout: float = 0.1
    attention_dropout: float = 0.1
    num_classes: int = 100      # k-means clusters predicted
    final_dim: int = 64
    logit_temp: float = 0.1
    mask_prob: float = 0.08
    mask_length: int = 10
    utterance_cmvn: bool = False  # subtract each clip's own mean log-mel (channel/level normalisation)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<config>") -> TinyHubertConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{source}: unknown tiny HuBERT config keys {unknown}")
        return cls(**d)


def frame_lengths(sample_lengths: torch.Tensor) -> torch.Tensor:
    """Frames per clip: ``floor((N - 400) / 320) + 1`` (0 below 400 samples); ``(batch,)`` -> ``(batch,)``."""
    return torch.clamp((sample_lengths - WINDOW) // HOP + 1, min=0)


def span_mask(lengths: torch.Tensor, max_frames: int, prob: float, span: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """HuBERT-style span mask ``(batch, max_frames)`` bool, True = masked.

    Every valid frame ``t <= length - span`` starts a span of ``span`` frames with probability
    ``prob``; a clip that drew no start gets one uniformly at random, so every clip has a masked
    span. Spans are shortened to half the clip for clips shorter than ``2 * span`` frames.
    """
    batch = lengths.shape[0]
    mask = torch.zeros(batch, max_frames, dtype=torch.bool)
    draws = torch.rand(batch, max_frames, generator=generator)
    picks = torch.rand(batch, generator=generator)
    for b in range(batch):
        n = int(lengths[b])
        if n <= 0:
            continue
        width = max(1, min(span, n // 2))
        last = n - width  # last allowed start
        starts = torch.nonzero(draws[b, : last + 1] < prob).flatten()
        if starts.numel() == 0:
            starts = torch.tensor([min(last, int(picks[b] * (last + 1)))])
        for s in starts.tolist():
            mask[b, s: s + width] = True
    return mask


def warp_frequency(spec: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Rescale the frequency axis of power spectra: ``(batch, freq, frames)``, ``(batch,)`` -> same shape.

    Output bin ``f`` reads input frequency ``f / factor`` (linear interpolation; above the top bin:
    zero), so ``factor > 1`` moves formants up (a shorter vocal tract), ``< 1`` down. Energy per bin
    is kept, not total energy: this is VTLP (Jaitly & Hinton 2013) on the linear spectrum.
    """
    n_freq = spec.shape[1]
    bins = torch.arange(n_freq, device=spec.device, dtype=spec.dtype)
    src = bins[None, :] / factors[:, None].to(spec.dtype)
    lo = src.floor().long().clamp(0, n_freq - 1)
    hi = (lo + 1).clamp(max=n_freq - 1)
    w = (src - lo.to(spec.dtype)).clamp(0, 1)[..., None]
    frames = spec.shape[2]
    out = (spec.gather(1, lo[..., None].expand(-1, -1, frames)) * (1 - w)
           + spec.gather(1, hi[..., None].expand(-1, -1, frames)) * w)
    return out * (src <= n_freq - 1)[..., None].to(spec.dtype)


class _EncoderLayer(nn.Module):
    """Post-LN transformer layer (HuBERT-Base layout) on ``(batch, frames, dim)``."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.attention_dropout = heads, attention_dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, ffn_dim)
        self.ff2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """``x`` ``(batch, frames, dim)``; ``keep`` ``(batch, frames)`` True on real frames, or None."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if keep is None else keep[:, None, None, :]
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attention_dropout if self.training else 0.0)
        x = self.norm1(x + self.dropout(self.out(a.transpose(1, 2).reshape(B, T, D))))
        return self.norm2(x + self.dropout(self.ff2(self.dropout(F.gelu(self.ff1(x))))))


class TinyHubert(nn.Module):
    """Log-mel HuBERT: ``(batch, samples)`` 16 kHz -> per-layer ``(batch, frames, dim)`` at 50 Hz."""

    def __init__(self, config: TinyHubertConfig):
        super().__init__()
        c = self.config = config
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=WINDOW, win_length=WINDOW, hop_length=HOP,
            n_mels=c.n_mels, center=False, power=2.0)
        # Global standardisation of the log-mel bands, set from training data (set_normalization).
        self.register_buffer("feat_mean", torch.zeros(c.n_mels))
        self.register_buffer("feat_std", torch.ones(c.n_mels))
        self.proj = nn.Linear(c.n_mels, c.dim)
        self.mask_emb = nn.Parameter(torch.empty(c.dim).uniform_())
        self.pos_conv = nn.Conv1d(c.dim, c.dim, c.conv_pos, padding=c.conv_pos // 2, groups=c.conv_pos_groups)
        self.pos_norm = nn.LayerNorm(c.dim)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            _EncoderLayer(c.dim, c.heads, c.ffn_dim, c.dropout, c.attention_dropout) for _ in range(c.layers))
        self.final_proj = nn.Linear(c.dim, c.final_dim)
        self.label_emb = nn.Parameter(torch.randn(c.num_classes, c.final_dim))

    # ---- front end
    def logmel(self, waves: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, samples)`` -> raw log-mel ``(batch, frames, n_mels)`` (no standardisation).

        ``warp`` ``(batch,)``: vocal tract length perturbation (training only): the linear-frequency
        power spectrum of clip ``b`` is rescaled so that energy at ``f`` moves to ``warp[b] * f``.
        """
        if waves.shape[-1] < WINDOW:
            return waves.new_zeros(waves.shape[0], 0, self.config.n_mels)
        spec = self.melspec.spectrogram(waves.float())  # (batch, freq, frames)
        if warp is not None:
            spec = warp_frequency(spec, warp.to(spec.device))
        return torch.log(self.melspec.mel_scale(spec) + 1e-6).transpose(1, 2)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the per-band log-mel mean and std ``(n_mels,)`` (estimated on training audio)."""
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(std.clamp_min(1e-3))

    # ---- encoder
    def encode(self, waves: torch.Tensor, lengths: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, num_layers: int | None = None,
               warp: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Run the encoder.

        Args:
            waves: ``(batch, samples)`` at 16 kHz, zero-padded after ``lengths``.
            lengths: ``(batch,)`` valid samples per clip; None = all full length.
            mask: ``(batch, frames)`` bool, True = replace the frame by the mask embedding (training).
            num_layers: stop after this many layers.
            warp: ``(batch,)`` frequency warp factors (training augmentation, see :meth:`logmel`).

        Returns:
            ``([layer_1, ..., layer_n], frame_lengths)``: each ``(batch, frames, dim)``; frames past
            a clip's ``frame_lengths`` entry are padding.
        """
        B = waves.shape[0]
        if lengths is None:
            lengths = torch.full((B,), waves.shape[-1], dtype=torch.long)
        flen = frame_lengths(lengths.cpu())
        x = self.logmel(waves, warp)
        T = x.shape[1]
        keep = (torch.arange(T)[None, :] < flen[:, None]).to(x.device)
        if self.config.utterance_cmvn:
            # the mean over the clip's own frames only, so padding does not change it
            k = keep[..., None].to(x.dtype)
            x = x - (x * k).sum(1, keepdim=True) / k.sum(1, keepdim=True).clamp_min(1.0)
        x = (x - self.feat_mean) / self.feat_std
        x = self.proj(x)
        if mask is not None:
            x = torch.where(mask[..., None].to(x.device), self.mask_emb.to(x.dtype), x)
        x = x * keep[..., None]  # padded frames are zeros, as the conv's own padding
        pos = self.pos_conv(x.transpose(1, 2))
        if self.config.conv_pos % 2 == 0:
            pos = pos[..., :-1]  # an even kernel yields one frame too many
        x = self.dropout(self.pos_norm(x + F.gelu(pos).transpose(1, 2)))
        attn_keep = None if bool(keep.all()) else keep
        outs: list[torch.Tensor] = []
        for layer in self.layers[: num_layers or len(self.layers)]:
            x = layer(x, attn_keep)
            outs.append(x)
        return outs, flen

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster scores ``(..., num_classes)`` for encoder output ``(..., dim)``: cosine / temperature."""
        proj = F.normalize(self.final_proj(x), dim=-1)
        return proj @ F.normalize(self.label_emb, dim=-1).T / self.config.logit_temp


def load_tiny_hubert(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                     ) -> tuple[TinyHubert, dict[str, Any]]:
    """Read an ``spkit.tiny_hubert`` checkpoint strictly; returns ``(model in eval mode, checkpoint)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable tiny HuBERT checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: unknown checkpoint layout (format {got!r}, expected {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise ValueError(f"{path}: {FORMAT} version {ckpt.get('version')!r} not supported (need {VERSION})")
    model = TinyHubert(TinyHubertConfig.from_dict(ckpt["config"], str(path)))
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the saved config: {e}") from e
    return model.eval(), ckpt


TARGET_SENTENCES = {
    "phone_alignment": "a tiny HuBERT trained on the synthesizer's phone labels (forced-alignment targets, "
    "the HuBERT paper's topline), not self-supervised",
    "mfcc_kmeans": "a tiny HuBERT trained self-supervised on k-means clusters of MFCC features "
    "(HuBERT's first iteration)",
}
"""The one plain sentence that says what the encoder was trained on, wherever its units appear (the model
card, results.md, the report)."""


def training_targets(ckpt: dict[str, Any]) -> str:
    """What a checkpoint's model learned to predict, as results.json's ``units.targets`` names it:
    ``phone_alignment`` (the synthesizer's phone labels: supervised, HuBERT's forced-alignment topline) or
    ``mfcc_kmeans`` (HuBERT's self-supervised iterations starting from MFCC k-means), following the teacher
    chain of a later iteration back to its first."""
    targets = ckpt.get("targets") or {}
    if targets.get("kind") == "phones":
        return "phone_alignment"
    teacher = targets.get("teacher")
    if targets.get("kind") == "tiny_hubert" and teacher and Path(teacher).is_file():
        return training_targets(torch.load(teacher, map_location="cpu", weights_only=True))
    return "mfcc_kmeans"


class TinyHubertExtractor:
    """Features of one layer of a tiny HuBERT: ``(samples,)`` 16 kHz -> ``(frames, dim)`` at 50 Hz."""

    name = "tiny_hubert"
    padding_invariant = True  # clips of any length may share a batch (see the module docstring)

    def __init__(self, model: TinyHubert, layer: int | None = None, *, source: str = "<model>",
                 digest: str = "", device: str | torch.device = "cpu", cmvn: bool = False,
                 targets: str | None = None):
        self.model = model.to(device).eval()
        self.targets = targets  # what the model was trained to predict (:func:`training_targets`)
        self.cmvn = bool(cmvn)  # per-clip mean/variance normalisation of the layer (see clip_cmvn)
        self.num_layers = model.config.layers
        # The middle layer by default: in HuBERT the middle layers carry the most phonetic content.
        self.layer = check_layer(layer if layer is not None else max(1, self.num_layers // 2),
                                 self.num_layers, source)
        self.dim = model.config.dim
        self.source, self.digest, self.device = source, digest, torch.device(device)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, layer: int | None = None,
                        device: str | torch.device = "cpu", cmvn: bool = False) -> TinyHubertExtractor:
        """Load a checkpoint written by :mod:`spkit.features.pretrain` (strict; safe unpickling)."""
        model, ckpt = load_tiny_hubert(path)
        return cls(model, layer, source=str(path), digest=state_digest(model), device=device, cmvn=cmvn,
                   targets=training_targets(ckpt))

    @property
    def fingerprint(self) -> str:
        return f"tiny_hubert-{self.digest or 'unsaved'}-L{self.layer}" + ("-cmvn" if self.cmvn else "")

    def with_layer(self, layer: int) -> TinyHubertExtractor:
        """The same weights (shared), outputting ``layer``."""
        return TinyHubertExtractor(self.model, layer, source=self.source, digest=self.digest,
                                   device=self.device, cmvn=self.cmvn, targets=self.targets)

    def _run(self, waves: torch.Tensor, lengths: torch.Tensor | None, num_layers: int
             ) -> tuple[list[torch.Tensor], torch.Tensor]:
        with torch.inference_mode():
            return self.model.encode(waves.to(self.device, torch.float32), lengths, num_layers=num_layers)

    def extract_batch(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, samples)`` zero-padded clips -> ``(batch, frames, dim)`` on the CPU.

        ``lengths`` ``(batch,)`` gives valid samples; frames past ``num_frames(lengths[b])`` are zeros.
        The model is padding-invariant, so clips of any lengths may share a batch.
        """
        outs, flen = self._run(waves, lengths, self.layer)
        x = outs[self.layer - 1].float().cpu()
        if self.cmvn:
            return clip_cmvn(x, flen)
        keep = torch.arange(x.shape[1])[None, :] < flen.cpu()[:, None]
        return x * keep[..., None]

    def extract(self, wave: torch.Tensor) -> torch.Tensor:
        """``(samples,)`` at 16 kHz -> ``(num_frames(samples), dim)``."""
        return self.extract_batch(check_wave(wave)[None])[0]

    def extract_layers(self, wave: torch.Tensor) -> torch.Tensor:
        """All layers of one clip, raw (no ``cmvn``: the downstream baseline's input):
        ``(samples,)`` -> ``(num_layers, frames, dim)``."""
        outs, _ = self._run(check_wave(wave)[None], None, self.num_layers)
        return torch.stack([o[0] for o in outs]).float().cpu()


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


"""Pre-train a :class:`~spkit.features.tiny_hubert.TinyHubert` with HuBERT's recipe, on the CPU.

Iteration 1 predicts k-means clusters of 39-dim MFCC features (13 + deltas + delta-deltas, CMVN per
utterance) on masked frames; iteration 2 trains a fresh model on clusters of a middle layer of the
iteration-1 model (``PretrainConfig.target_layer``). With ``targets="phones"`` iteration 1 predicts
given frame labels instead (``pretrain(..., frame_targets=...)``): the synthesizer's phone per 20 ms
frame, the forced-alignment target topline of the HuBERT paper (Hsu et al. 2021, section V-D), which is
supervised, not self-supervised. Loss: cross-entropy on masked frames, plus
``unmasked_weight`` times the cross-entropy on unmasked frames (HuBERT: 0).

Training: random frame-aligned crops of ``crop_seconds`` (whole clip when shorter), AdamW with
linear warmup then linear decay to zero at ``max_steps``, gradient clipping. The budget is
``max_steps`` and optionally ``max_seconds`` of wall clock: a time-limited run stops early with a
checkpoint, and calling :func:`pretrain` again resumes it. Checkpoints are written atomically every
``save_every`` steps and at the end. Same seed -> same weights, including across a resume: batch
order, crops, masks and dropout are drawn from generators seeded by ``(seed, step)``, never from
state that an interruption would lose.

The targets' k-means is :mod:`spkit.cluster`'s (the one the units use too): sklearn ``MiniBatchKMeans``
with GSLM's settings except ``kmeans_n_init``, frames assigned over their full squared distance.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from spkit.cluster import assign, fit_centers
from spkit.features.base import HOP, num_frames
from spkit.features.spectral import MFCCExtractor
from spkit.features.tiny_hubert import (
    FORMAT,
    VERSION,
    TinyHubert,
    TinyHubertConfig,
    TinyHubertExtractor,
    load_tiny_hubert,
    span_mask,
)
from spkit.io import torch_save
from spkit.synth.noise import colored

log = logging.getLogger(__name__)


INVARIANCE_AUGMENTATION: dict[str, Any] = {"warp_range": (0.85, 1.18), "noise_prob": 0.5,
                                           "noise_snr_db": (0.0, 20.0), "mix_prob": 0.25,
                                           "mix_snr_db": (5.0, 20.0), "gain_db": 6.0}
"""The augmentation spkit's presets train with (:class:`PretrainConfig` fields; measured in the README)."""


@dataclass
class PretrainConfig:
    """Training settings (saved in the checkpoint; a resume must use the same ones)."""

    iteration: int = 1              # 1: MFCC k-means targets; 2+: k-means of the teacher's layer
    # "kmeans": HuBERT's clustered targets (above); "phones": the frame labels handed to pretrain()
    # (iteration 1 only; num_clusters is then the label inventory's size).
    targets: str = "kmeans"
    num_clusters: int = 100         # HuBERT: 100 (iteration 1), 500 (iteration 2)
    target_layer: int | None = None  # teacher layer for iteration >= 2; None = middle layer
    target_cmvn: bool = False       # normalise the teacher's layer per clip before k-means (as the units are)
    # Iteration >= 2: start from the teacher's weights (all but the label embeddings, which depend on the
    # new targets) instead of a fresh model. HuBERT restarts from scratch; at CPU scale the teacher's
    # steps are too dear to throw away (README "spkit-base").
    init_from_teacher: bool = False
    crop_seconds: float = 2.0
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_steps: int = 2000
    max_seconds: float | None = None
    unmasked_weight: float = 0.0
    grad_clip: float = 10.0
    save_every: int = 200
    seed: int = 0
    kmeans_max_frames: int = 100_000  # frames sampled to fit k-means
    kmeans_n_init: int = 3            # GSLM uses 20 (785 s for 20k x 768 here); 3 is enough on CPU
    # Invariance augmentation (ContentVec / WavLM style): the student hears a perturbed clip while its
    # targets stay those of the unperturbed clip, so the features learn to ignore what was perturbed.
    warp_range: tuple[float, float] | None = None  # VTLP: frequency axis scaled by U(lo, hi) per clip
    noise_prob: float = 0.0          # probability of adding noise (white/pink/brown) to a clip
    noise_snr_db: tuple[float, float] = (0.0, 20.0)
    mix_prob: float = 0.0            # probability of overlaying another clip of the batch (WavLM)
    mix_snr_db: tuple[float, float] = (5.0, 20.0)
    gain_db: float = 0.0             # random level change of +- gain_db

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------- targets
def _target_extractor(config: PretrainConfig, teacher: TinyHubertExtractor | None) -> Any:
    if config.iteration == 1:
        return MFCCExtractor(cmvn=True)
    if teacher is None:
        raise ValueError(f"iteration {config.iteration} needs a teacher checkpoint (iteration-1 model)")
    return teacher


def clip_lengths(waves: Sequence[torch.Tensor]) -> np.ndarray:
    """Samples per clip; read from the index of a :class:`~spkit.data.packed.PackedAudio` (no audio)."""
    lengths = getattr(waves, "lengths", None)
    if lengths is not None:
        return np.asarray(lengths, np.int64)
    return np.array([w.shape[-1] for w in waves], np.int64)


def make_targets(waves: Sequence[torch.Tensor], config: PretrainConfig,
                 teacher: TinyHubertExtractor | None = None,
                 centers: torch.Tensor | None = None, progress: bool = True,
                 keep_features_bytes: int = 2**30) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Frame targets per clip ``[(num_frames(N_i),)]`` and the k-means centres ``(K, dim)``.

    Fits k-means on up to ``kmeans_max_frames`` frames drawn uniformly over all clips' frames unless
    ``centers`` are given (a resume). Streams: the features of a clip are assigned and dropped, so a
    corpus of any size fits; only when they are under ``keep_features_bytes`` in all are they kept
    between the fitting pass and the assignment pass instead of being computed twice.
    """
    extractor = _target_extractor(config, teacher)
    frames = np.array([num_frames(int(n)) for n in clip_lengths(waves)], np.int64)
    total = int(frames.sum())
    kept: list[torch.Tensor] | None = None
    if centers is None:
        rng = np.random.default_rng(config.seed)
        pick = (np.sort(rng.choice(total, config.kmeans_max_frames, replace=False))
                if total > config.kmeans_max_frames else np.arange(total))
        starts = np.concatenate([[0], np.cumsum(frames)])
        dim = extractor.dim
        keep = total * dim * 4 <= keep_features_bytes
        kept = [] if keep else None
        sample = []
        for i in tqdm(range(len(waves)), desc=f"targets ({extractor.name}, k-means sample)", leave=False,
                      disable=not progress):
            lo, hi = np.searchsorted(pick, [starts[i], starts[i + 1]])
            if lo == hi and not keep:
                continue
            f = extractor.extract(waves[i])
            if kept is not None:
                kept.append(f)
            if hi > lo:
                sample.append(f[torch.from_numpy(pick[lo:hi] - starts[i])])
        allf = torch.cat(sample).numpy()
        fit = fit_centers(allf, config.num_clusters, backend="sklearn", preset="gslm",
                          n_init=config.kmeans_n_init, seed=config.seed)
        centers = torch.from_numpy(fit.centers.astype(np.float32))
    labels = []
    for i in tqdm(range(len(waves)), desc=f"targets ({extractor.name})", leave=False, disable=not progress):
        f = kept[i] if kept is not None else extractor.extract(waves[i])
        labels.append(assign(f, centers, chunk=None, full_distance=True)[0])
    return labels, centers


# --------------------------------------------------------------------------- batches
def _seed(*keys: int) -> int:
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + int(k)) % (2**63 - 1)
    return seed


def _generator(*keys: int) -> torch.Generator:
    # One independent stream per (seed, purpose, step): nothing depends on earlier steps.
    return torch.Generator().manual_seed(_seed(*keys))


def make_batch(waves: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], config: PretrainConfig,
               step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch of ``step``: ``(waves (B, samples), lengths (B,), targets (B, frames))``.

    Clips are visited in a per-epoch permutation; each is cropped at a random frame boundary to
    ``crop_seconds``, so crop frame ``j`` is clip frame ``start + j`` and its target stays aligned.
    Targets past a clip's frames are -100 (ignored).
    """
    n, bs = len(waves), min(config.batch_size, len(waves))
    per_epoch = n // bs
    epoch, pos = divmod(step, per_epoch)
    order = torch.randperm(n, generator=_generator(config.seed, 1, epoch))[pos * bs:(pos + 1) * bs]
    g = _generator(config.seed, 2, step)
    crop_frames = max(1, int(config.crop_seconds * 50))
    crops, lens, tgts = [], [], []
    for i in order.tolist():
        w, y = waves[i], labels[i]
        nf = y.shape[0]
        start = int(torch.randint(0, max(1, nf - crop_frames + 1), (1,), generator=g))
        take = min(crop_frames, nf - start)
        samples = (take - 1) * HOP + 400
        crops.append(w[start * HOP: start * HOP + samples])
        tgts.append(y[start: start + take])
        lens.append(samples)
    L = max(lens)
    out = torch.zeros(len(crops), L)
    tg = torch.full((len(crops), num_frames(L)), -100, dtype=torch.long)
    for b, (c, t) in enumerate(zip(crops, tgts)):
        out[b, : c.shape[0]] = c
        tg[b, : t.shape[0]] = t
    return out, torch.tensor(lens), tg


def _uniform(bounds: tuple[float, float], u: torch.Tensor) -> float:
    """``u`` in [0, 1) mapped onto ``bounds``."""
    return bounds[0] + float(u) * (bounds[1] - bounds[0])


def augment_batch(waves: torch.Tensor, lengths: torch.Tensor, config: PretrainConfig, step: int
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The perturbed input of ``step``'s batch: ``(waves (B, samples), warp factors (B,) or None)``.

    Deterministic in ``(seed, step)``. Noise and the overlaid clip are scaled against each clip's own
    RMS; padding stays zero, so frame targets stay aligned.
    """
    g = _generator(config.seed, 5, step)
    B = waves.shape[0]
    out = waves.clone()
    rms = torch.stack([w[: int(n)].pow(2).mean().sqrt().clamp_min(1e-5) for w, n in zip(waves, lengths)])
    draws = torch.rand(B, 6, generator=g)
    for b in range(B):
        n = int(lengths[b])
        if config.mix_prob > 0 and draws[b, 0] < config.mix_prob and B > 1:
            other = (b + 1 + int(draws[b, 1] * (B - 1))) % B
            src = waves[other, : int(lengths[other])]
            snr = _uniform(config.mix_snr_db, draws[b, 2])
            take = min(n, src.shape[0])
            out[b, :take] += src[:take] * (rms[b] / rms[other]) * 10 ** (-snr / 20)
        if config.noise_prob > 0 and draws[b, 3] < config.noise_prob:
            snr = _uniform(config.noise_snr_db, draws[b, 4])
            exponent = float(torch.randint(0, 3, (1,), generator=g))  # white, pink or brown
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
            noise = torch.from_numpy(colored(n, rng, exponent)).to(out.dtype)
            out[b, :n] += noise * rms[b] * 10 ** (-snr / 20)
        if config.gain_db > 0:
            out[b, :n] *= 10 ** (config.gain_db * (2 * float(draws[b, 5]) - 1) / 20)
    warp = None
    if config.warp_range is not None:
        lo, hi = config.warp_range
        warp = lo + torch.rand(B, generator=g) * (hi - lo)
    return out, warp


def _plain(value: Any) -> Any:
    """Tuples as lists: a checkpoint's saved config holds lists where the live one holds tuples."""
    return list(value) if isinstance(value, (tuple, list)) else value


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def loss_fn(model: TinyHubert, waves: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
            mask: torch.Tensor, unmasked_weight: float, warp: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, float]:
    """Masked-prediction loss and masked-frame accuracy for one batch.

    ``waves`` ``(B, samples)``, ``lengths`` ``(B,)``, ``targets`` ``(B, frames)`` (-100 = padding),
    ``mask`` ``(B, frames)`` bool, ``warp`` ``(B,)`` optional frequency warp factors.
    """
    outs, _ = model.encode(waves, lengths, mask=mask, warp=warp)
    logits = model.logits(outs[-1])
    valid = targets >= 0
    m, u = mask & valid, ~mask & valid
    loss = F.cross_entropy(logits[m], targets[m])
    if unmasked_weight > 0 and bool(u.any()):
        loss = loss + unmasked_weight * F.cross_entropy(logits[u], targets[u])
    acc = (logits[m].argmax(-1) == targets[m]).float().mean().item()
    return loss, acc


# --------------------------------------------------------------------------- training
def _cached_targets(waves: Sequence[torch.Tensor], config: PretrainConfig,
                    teacher: TinyHubertExtractor | None, centers: torch.Tensor | None, progress: bool,
                    cache: str | os.PathLike | None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """:func:`make_targets`, through ``cache`` when given (keyed by the clips, the iteration and K)."""
    lengths = clip_lengths(waves)
    key = {"iteration": config.iteration, "num_clusters": config.num_clusters, "seed": config.seed,
           "kmeans_max_frames": config.kmeans_max_frames, "clips": len(lengths),
           "samples": int(lengths.sum()), "teacher": None if teacher is None else teacher.fingerprint}
    if cache is not None and Path(cache).is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved["key"] == key and (centers is None or torch.equal(saved["centers"], centers)):
            flat, counts = saved["labels"].long(), saved["counts"].tolist()
            return list(torch.split(flat, counts)), saved["centers"]
    labels, centers = make_targets(waves, config, teacher, centers, progress)
    if cache is not None:
        torch_save({"key": key, "centers": centers, "labels": torch.cat(labels).to(torch.int16),
                    "counts": torch.tensor([len(y) for y in labels])}, cache)
    return labels, centers


def _check_frame_targets(waves: Sequence[torch.Tensor], frame_targets: Sequence[torch.Tensor],
                         num_clusters: int) -> None:
    """Given targets must be one per clip, one per frame, with ids below ``num_clusters``."""
    if len(frame_targets) != len(waves):
        raise ValueError(f"frame_targets: {len(frame_targets)} sequences for {len(waves)} clips")
    for i, (n, y) in enumerate(zip(clip_lengths(waves), frame_targets)):
        if len(y) != num_frames(int(n)):
            raise ValueError(f"frame_targets[{i}]: {len(y)} labels for a clip of {num_frames(int(n))} frames")
        y = torch.as_tensor(y)
        if len(y) and (int(y.max()) >= num_clusters or int(y.min()) < -100):
            raise ValueError(f"frame_targets[{i}]: ids must lie in [0, {num_clusters}) (or -100)")


def _normalization(waves: Sequence[torch.Tensor], model: TinyHubert) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        mels = [model.logmel(w[None])[0] for w in waves[:2000]]
        if model.config.utterance_cmvn:
            mels = [m - m.mean(0, keepdim=True) for m in mels]
        mels = torch.cat(mels)
    return mels.mean(0), mels.std(0)


def pretrain(waves: Sequence[torch.Tensor], out: str | os.PathLike,
             config: PretrainConfig | None = None, model_config: TinyHubertConfig | None = None,
             teacher: str | os.PathLike | None = None, until_step: int | None = None,
             progress: bool = True, on_step: Callable[[int, float], None] | None = None,
             targets_cache: str | os.PathLike | None = None,
             frame_targets: Sequence[torch.Tensor] | None = None,
             target_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Train (or resume) a tiny HuBERT on ``waves`` and write its checkpoint to ``out``.

    Args:
        waves: training clips, each ``(samples,)`` float32 at 16 kHz (at least 400 samples).
        out: checkpoint path; if it exists, training resumes from it (configs must match).
        config: training settings; ``model_config``: architecture (``num_classes`` is set to
            ``config.num_clusters``).
        teacher: iteration-1 checkpoint whose ``target_layer`` is clustered (iteration >= 2).
        until_step: stop after this global step (a chunk of a longer run), checkpointing.
        targets_cache: a file for the frame targets of ``waves`` (``.pt``): a resume loads them instead
            of running the target features over the whole corpus again (minutes at tens of hours).
        frame_targets: with ``config.targets == "phones"``: one ``(num_frames(N_i),)`` int64 tensor per clip,
            ids in ``[0, num_clusters)`` (-100: no target); ``target_names`` name the ids (saved).
        progress: show a tqdm bar; ``on_step(step, loss)`` is called after every step.

    Returns:
        A summary: ``{"step", "loss", "acc", "seconds", "audio_seconds", "finished", "path"}``.
    """
    config = config or PretrainConfig()
    model_config = dataclasses.replace(model_config or TinyHubertConfig(), num_classes=config.num_clusters)
    out = Path(out)
    if not waves:
        raise ValueError("no training clips")
    short = np.flatnonzero(clip_lengths(waves) < 400).tolist()
    if short:
        raise ValueError(f"clips {short[:5]} are shorter than 400 samples (25 ms)")

    if config.targets not in ("kmeans", "phones"):
        raise ValueError(f"targets must be 'kmeans' or 'phones', got {config.targets!r}")
    if config.targets == "phones":
        if config.iteration != 1 or frame_targets is None:
            raise ValueError("phone targets are iteration 1's and need frame_targets (one tensor a clip)")
        _check_frame_targets(waves, frame_targets, config.num_clusters)
    teacher_ext = None
    if config.iteration >= 2:
        if teacher is None:
            raise ValueError(f"iteration {config.iteration} needs a teacher checkpoint")
        teacher_ext = TinyHubertExtractor.from_checkpoint(teacher, cmvn=config.target_cmvn)
        teacher_ext = teacher_ext.with_layer(config.target_layer or teacher_ext.layer)

    with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed only
        torch.manual_seed(_seed(config.seed, 0))
        model = TinyHubert(model_config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, config.warmup_steps, config.max_steps))
    step, seconds, audio_seconds, history, centers = 0, 0.0, 0.0, [], None
    if out.exists():
        _, ckpt = load_tiny_hubert(out)
        saved = PretrainConfig.from_dict(ckpt["train"])
        for key in ("iteration", "targets", "num_clusters", "target_layer", "target_cmvn",
                    "init_from_teacher", "seed", "batch_size", "crop_seconds", "lr", "warmup_steps",
                    "max_steps", "warp_range", "noise_prob", "noise_snr_db", "mix_prob", "mix_snr_db",
                    "gain_db"):
            if _plain(getattr(saved, key)) != _plain(getattr(config, key)):
                raise ValueError(f"{out}: cannot resume: {key}={getattr(saved, key)!r} in the checkpoint, "
                                 f"{getattr(config, key)!r} now")
        if TinyHubertConfig.from_dict(ckpt["config"]) != model_config:
            raise ValueError(f"{out}: cannot resume: the model config differs from the checkpoint's")
        model.load_state_dict(ckpt["model"], strict=True)
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step, seconds, audio_seconds = ckpt["step"], ckpt["seconds"], ckpt["audio_seconds"]
        history, centers = ckpt["history"], ckpt["targets"]["centers"]
        log.info("%s: resuming at step %d", out, step)
    elif config.init_from_teacher and teacher_ext is not None:
        # the teacher is loaded already (it makes the targets): its weights, all but the label embeddings
        teacher_config = dataclasses.replace(teacher_ext.model.config, num_classes=model_config.num_classes)
        if teacher_config != model_config:
            raise ValueError(f"{teacher}: init_from_teacher needs the same architecture as the new model")
        weights = {k: v for k, v in teacher_ext.model.state_dict().items() if k != "label_emb"}
        weights["label_emb"] = model.label_emb.detach().clone()  # new targets: fresh label embeddings
        model.load_state_dict(weights, strict=True)
    else:
        model.set_normalization(*_normalization(waves, model))

    if config.targets == "phones":
        labels = [torch.as_tensor(y, dtype=torch.long) for y in frame_targets]
        target_info = {"kind": "phones", "num_clusters": config.num_clusters, "centers": None,
                       "names": None if target_names is None else list(target_names),
                       "teacher": None, "teacher_layer": None}
    else:
        labels, centers = _cached_targets(waves, config, teacher_ext, centers, progress, targets_cache)
        target_info = {"kind": "mfcc" if config.iteration == 1 else "tiny_hubert",
                       "num_clusters": config.num_clusters, "centers": centers,
                       "teacher": None if teacher is None else str(teacher),
                       "teacher_layer": None if teacher_ext is None else teacher_ext.layer}

    def save() -> None:
        torch_save({"format": FORMAT, "version": VERSION, "config": dataclasses.asdict(model_config),
                    "model": model.state_dict(), "train": dataclasses.asdict(config), "targets": target_info,
                    "step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "history": history, "seconds": seconds, "audio_seconds": audio_seconds}, out)

    stop = min(config.max_steps, until_step if until_step is not None else config.max_steps)
    started = time.monotonic()
    loss_v, acc = math.nan, math.nan
    bar = tqdm(total=stop, initial=step, desc=f"tiny HuBERT it{config.iteration}", disable=not progress)
    model.train()
    while step < stop:
        if config.max_seconds is not None and time.monotonic() - started >= config.max_seconds:
            break
        t0 = time.monotonic()
        batch, lengths, targets = make_batch(waves, labels, config, step)
        batch, warp = augment_batch(batch, lengths, config, step)
        mask = span_mask(torch.tensor([t.ge(0).sum() for t in targets]), targets.shape[1],
                         model_config.mask_prob, model_config.mask_length, _generator(config.seed, 3, step))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(config.seed, 4, step))  # dropout of this step
            loss, acc = loss_fn(model, batch, lengths, targets, mask, config.unmasked_weight, warp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            sched.step()
        step += 1
        loss_v = float(loss.detach())
        seconds += time.monotonic() - t0
        audio_seconds += float(lengths.sum()) / 16000
        history.append([step, loss_v, acc])
        bar.update(1)
        bar.set_postfix(loss=f"{loss_v:.3f}", acc=f"{acc:.2f}")
        if on_step is not None:
            on_step(step, loss_v)
        if step % config.save_every == 0:
            save()
    bar.close()
    save()
    return {"step": step, "loss": loss_v, "acc": acc, "seconds": seconds, "audio_seconds": audio_seconds,
            "finished": step >= config.max_steps, "path": str(out)}


def pretrain_iterations(waves: Sequence[torch.Tensor], out_dir: str | os.PathLike, iterations: int = 2,
                        config: PretrainConfig | None = None, model_config: TinyHubertConfig | None = None,
                        progress: bool = True) -> list[dict[str, Any]]:
    """HuBERT's iterations: ``out_dir/iter1.pt`` on MFCC targets, then ``iter{i}.pt`` on the previous one.

    Each finished iteration is reused (resumed to completion) when the call is repeated.
    """
    out_dir = Path(out_dir)
    config = config or PretrainConfig()
    results, teacher = [], None
    for it in range(1, iterations + 1):
        cfg = dataclasses.replace(config, iteration=it)
        res = pretrain(waves, out_dir / f"iter{it}.pt", cfg, model_config, teacher, progress=progress)
        results.append(res)
        if not res["finished"]:
            break  # time budget spent: the next call resumes this iteration
        teacher = out_dir / f"iter{it}.pt"
    return results

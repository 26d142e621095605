"""Pretrain the unit LM on GSLM-format unit files (``name|u1 u2 ...``).

AdamW, linear warmup then cosine (or inverse-sqrt) decay, gradient clipping, bf16 autocast on GPU (and
optionally on CPUs with AVX512-bf16/AMX, ~2x faster there),
atomic checkpoints every ``save_every`` steps (model, optimizer, RNG states, data position: a resumed run
gives the same weights as an uninterrupted one), held-out perplexity on a validation file, a budget in
steps and/or CPU-seconds, and DDP under ``torchrun`` (``torch.distributed`` initialised from the env).

Outputs in ``out/``: ``checkpoint_last.pt`` (resume state), ``checkpoint_best.pt`` (best validation
perplexity), ``dict.txt``, ``history.json``. Load a trained model with :func:`load_ulm`.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm import tqdm

from spkit.io import torch_save, write_json
from spkit.ulm.data import BatchSampler, DataPosition, collate, encode_sequences, load_sequences
from spkit.ulm.dictionary import UnitDictionary
from spkit.ulm.model import CONFIGS, ULMConfig, UnitLM, lm_loss

CHECKPOINT_FORMAT = "spkit-ulm-1"


@dataclass
class ULMTrainConfig:
    """Pretraining settings.

    Attributes:
        model: a name in :data:`spkit.ulm.model.CONFIGS` (tiny, small, transformer_lm, transformer_lm_big).
        model_overrides: ULMConfig fields to change (e.g. ``{"dropout": 0.0}``).
        max_steps: optimizer steps (also the length of the LR schedule).
        max_cpu_seconds: stop earlier once the process has used this much CPU time (None: no limit).
        batch_size: global sequences per step (split over DDP ranks).
        max_len: longest training sequence (inputs), longer utterances are cut into pieces.
        lr, min_lr_ratio, warmup_steps, schedule: peak LR, floor of the cosine as a fraction of the peak,
            linear warmup length, ``cosine`` or ``inverse_sqrt``.
        weight_decay, betas, clip_norm: AdamW and gradient-norm clipping (0 = off).
        deduplicate: collapse repeated units (GSLM's uLM is trained on deduplicated units).
        eval_every, save_every: steps between validations / checkpoints (also done at the end).
        valid_batch_size: sequences per validation batch.
        bf16: bf16 autocast on CUDA.
        cpu_bf16: bf16 autocast on CPU too (about 2x faster fwd+bwd on a CPU with AVX512-bf16; weights,
            optimizer and loss stay float32).
        seed: seeds the init, dropout and the data order.
    """

    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    max_steps: int = 1000
    max_cpu_seconds: float | None = None
    batch_size: int = 32
    max_len: int = 512
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    clip_norm: float = 1.0
    deduplicate: bool = True
    eval_every: int = 200
    save_every: int = 200
    valid_batch_size: int = 32
    bf16: bool = True
    cpu_bf16: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in CONFIGS:
            raise ValueError(f"unknown model config {self.model!r}; choose from {sorted(CONFIGS)}")
        if self.schedule not in ("cosine", "inverse_sqrt"):
            raise ValueError(f"unknown schedule {self.schedule!r} (cosine, inverse_sqrt)")
        self.betas = tuple(self.betas)


def lr_at(step: int, cfg: ULMTrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then the chosen decay."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "inverse_sqrt":
        return cfg.lr * math.sqrt(max(cfg.warmup_steps, 1) / (step + 1))
    span = max(cfg.max_steps - cfg.warmup_steps, 1)
    t = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def _rng_state() -> dict[str, Any]:
    # numpy's RNG is unused here (and its state does not load with weights_only=True).
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device). Initialises the process group when launched by torchrun
    (``WORLD_SIZE`` > 1): NCCL on GPUs (one per ``LOCAL_RANK``), gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


@torch.no_grad()
def lm_perplexity(
    model: UnitLM, seqs: list[Tensor], batch_size: int, device: torch.device, bf16: bool = False
) -> dict[str, float]:
    """Token-level loss (nats) and perplexity of the uLM on held-out encoded sequences (eval mode)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths: less padding
    for i in range(0, len(order), batch_size):
        inputs, targets = collate([seqs[j] for j in order[i : i + batch_size]])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(inputs.to(device)).logits
        loss, n = lm_loss(logits, targets.to(device))
        total, count = total + loss.item(), count + int(n)
    model.train(was_training)
    loss = total / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "tokens": count}


def _checkpoint(model: UnitLM, dictionary: UnitDictionary, cfg: ULMTrainConfig, **extra: Any
                ) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "model_config": model.cfg.to_dict(),
        "dictionary": dictionary.symbols[4:],
        "train_config": asdict(cfg),
        **extra,
    }


def load_ulm(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[UnitLM, UnitDictionary]:
    """Load a spkit uLM checkpoint (``checkpoint_best.pt``/``checkpoint_last.pt`` or a folder holding one)
    strictly: a missing or unexpected weight raises. Returns (model in eval mode, dictionary)."""
    path = Path(path)
    if path.is_dir():
        path = (
            path / "checkpoint_best.pt"
            if (path / "checkpoint_best.pt").exists()
            else path / "checkpoint_last.pt"
        )
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such uLM checkpoint")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path}: not a spkit uLM checkpoint (for fairseq/GSLM files use "
            "spkit.ulm.fairseq_io.load_fairseq_ulm)"
        )
    model = UnitLM(ULMConfig.from_dict(state["model_config"]))
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the stored config: {e}") from None
    dictionary = UnitDictionary(state["dictionary"])
    if len(dictionary) != model.cfg.vocab_size:
        raise ValueError(
            f"{path}: dictionary of {len(dictionary)} tokens but vocab_size {model.cfg.vocab_size}"
        )
    return model.eval(), dictionary


def train(
    cfg: ULMTrainConfig,
    units_train: str | os.PathLike,
    units_valid: str | os.PathLike | None,
    out: str | os.PathLike,
    resume: bool = False,
    stop_after_steps: int | None = None,
    progress: bool = True,
    dictionary: UnitDictionary | None = None,
) -> dict[str, Any]:
    """Train a uLM; returns a summary (steps, final/best validation perplexity, tokens/s, CPU-seconds).

    Args:
        cfg: settings.
        units_train / units_valid: GSLM unit files (``name|u1 u2 ...``); the validation file should hold
            unseen speakers. Units missing from the training dictionary map to ``<unk>`` in validation.
        out: output folder (see module doc).
        resume: continue from ``out/checkpoint_last.pt`` (same config required; the budget is the total).
        stop_after_steps: stop (after saving) once this many steps ran in *this* call -- to slice long
            runs into jobs, and to test resumption.
        progress: show a tqdm bar (rank 0 only).
        dictionary: a fixed dictionary (e.g. ``UnitDictionary.from_units(range(100))``); default: built
            from the training units in fairseq-preprocess order, padded to a multiple of 8.
    """

    rank, world, device = setup_distributed()
    out = Path(out)
    last_path = out / "checkpoint_last.pt"
    train_utts = load_sequences(units_train, deduplicate=cfg.deduplicate)
    if dictionary is None:
        dictionary = UnitDictionary.from_sequences(u for _, u in train_utts)
    state = None
    if resume:
        if not last_path.exists():
            raise FileNotFoundError(f"{last_path}: nothing to resume")
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{last_path}: not a spkit uLM checkpoint")
        saved = ULMTrainConfig(**state["train_config"])
        changed = {
            k
            for k, v in asdict(cfg).items()
            if k not in ("max_steps", "max_cpu_seconds") and v != asdict(saved)[k]
        }
        if changed:
            raise ValueError(f"{last_path}: resume with different settings {sorted(changed)}")
        dictionary = UnitDictionary(state["dictionary"])
    train_seqs = encode_sequences(train_utts, dictionary, cfg.max_len)
    valid_seqs = (
        encode_sequences(load_sequences(units_valid, cfg.deduplicate), dictionary, cfg.max_len, unk=True)
        if units_valid
        else []
    )

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)  # its state is checkpointed: seeded, two runs' checkpoints are bit-identical
    model_cfg = CONFIGS[cfg.model](len(dictionary), **cfg.model_overrides)
    model = UnitLM(model_cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]  # biases and LayerNorms
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=cfg.betas,
    )
    step, position, history, best, cpu_used = 0, DataPosition(), [], math.inf, 0.0
    if state is not None:
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        step, position = state["step"], DataPosition(**state["data_position"])
        history, best, cpu_used = state["history"], state["best_valid_ppl"], state["cpu_seconds"]
        _set_rng_state(state["rng"][rank] if isinstance(state["rng"], list) else state["rng"])
    ddp = (
        torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
        if world > 1
        else model
    )
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        dictionary.save(out / "dict.txt")

    sampler = BatchSampler(len(train_seqs), cfg.batch_size, cfg.seed, rank, world)
    batches = sampler.iterate(position)
    use_bf16 = cfg.bf16 if device.type == "cuda" else cfg.cpu_bf16
    cpu0, wall0, tokens_seen, start_step = time.process_time(), time.perf_counter(), 0, step
    bar = tqdm(
        total=cfg.max_steps, initial=step, desc="uLM", disable=not progress or rank != 0, dynamic_ncols=True
    )

    def save(path: Path, valid: dict | None = None, full: bool = True) -> None:
        """Atomic checkpoint; ``full`` adds what resuming needs (optimizer, RNG states, data position)."""
        rngs: Any = _rng_state()
        if world > 1:  # every rank's RNG (dropout differs per rank)
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rngs)
            rngs = gathered
        if rank == 0 and not full:
            torch_save(_checkpoint(model, dictionary, cfg, step=step, valid=valid), path)
        elif rank == 0:
            torch_save(
                _checkpoint(
                    model,
                    dictionary,
                    cfg,
                    optimizer=opt.state_dict(),
                    step=step,
                    data_position=asdict(position),
                    rng=rngs,
                    history=history,
                    best_valid_ppl=best,
                    cpu_seconds=cpu_used + time.process_time() - cpu0,
                    valid=valid,
                ),
                path,
            )

    def validate() -> dict | None:
        nonlocal best
        if not valid_seqs:
            return None
        v = lm_perplexity(model, valid_seqs, cfg.valid_batch_size, device, use_bf16)
        history.append(
            {
                "step": step,
                "valid_loss": v["loss"],
                "valid_ppl": v["ppl"],
                "cpu_seconds": cpu_used + time.process_time() - cpu0,
            }
        )
        bar.set_postfix(valid_ppl=f"{v['ppl']:.2f}")
        if v["ppl"] < best:
            best = v["ppl"]
            save(out / "checkpoint_best.pt", v, full=False)
        return v

    model.train()
    last_valid = None
    while step < cfg.max_steps:
        if cfg.max_cpu_seconds is not None and cpu_used + time.process_time() - cpu0 >= cfg.max_cpu_seconds:
            break
        if stop_after_steps is not None and step - start_step >= stop_after_steps:
            break
        idx, position = next(batches)
        inputs, targets = collate([train_seqs[i] for i in idx])
        inputs, targets = inputs.to(device), targets.to(device)
        n_local = (targets != 1).sum()
        n_global = n_local.clone()
        if world > 1:
            dist.all_reduce(n_global)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = ddp(inputs).logits
        loss_sum, _ = lm_loss(logits, targets)
        # DDP averages gradients over ranks: scale so the result is the global per-token mean.
        (loss_sum * world / n_global.clamp(min=1)).backward()
        if cfg.clip_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += int(n_global)
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(
                loss=f"{loss_sum.item() / max(int(n_local), 1):.3f}", lr=f"{lr_at(step - 1, cfg):.2e}"
            )
        if cfg.eval_every and step % cfg.eval_every == 0:
            last_valid = validate()
        if cfg.save_every and step % cfg.save_every == 0:
            save(last_path)
    bar.close()
    if not history or history[-1]["step"] != step:
        last_valid = validate()
    save(last_path)
    if world > 1:
        dist.barrier()
    wall = time.perf_counter() - wall0
    summary = {
        "steps": step,
        "steps_this_run": step - start_step,
        "tokens_this_run": tokens_seen,
        "tokens_per_second": tokens_seen / max(wall, 1e-9),
        "cpu_seconds": cpu_used + time.process_time() - cpu0,
        "valid": last_valid,
        "best_valid_ppl": best if best < math.inf else None,
        "num_parameters": model.num_parameters(),
        "world_size": world,
        "fingerprint": model.fingerprint(),
    }
    if rank == 0:
        write_json(out / "history.json", {"summary": summary, "history": history})
    return summary

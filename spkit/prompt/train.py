"""Prompt tuning: Adam on the prompt (+ separator, + learnable verbalizer) of a frozen uLM.

SpeechPrompt trained with Adam (betas (0.9, 0.98)), lr 5e-3, batch 32, gradient clipping at 1.0 and early
stopping on the validation loss; the CPU-scale prototype needed lr 5e-2 (with prefixes initialised from the
LM's activations) to leave chance level, so :class:`TrainConfig` defaults to 5e-2 (the ``paper`` preset
uses 5e-3).

* Same seed -> same numbers: the data order of epoch e is a permutation drawn from ``seed`` and ``e``
  alone, the prompt dropout of epoch e draws from a generator seeded by ``seed`` and ``e`` alone, and the
  frozen LM runs in eval mode (no dropout, as SpeechPrompt's ``--dropout=0``), so a resumed run reproduces
  an uninterrupted one exactly (on the same device).
* ``out_dir/train_state.pt`` is written atomically after every epoch: trainable state, Adam state, the
  best state so far, early-stopping counters and the log. ``resume=True`` continues from it (and refuses
  one made for another uLM or another set of trainable parameters).
* bf16 autocast on CUDA (trainable parameters stay fp32); fp32 on CPU.
* Peak memory: CUDA: ``torch.cuda.max_memory_allocated`` after a reset (tensors only, not the allocator's
  cache). CPU: the peak resident set size of the process (``VmHWM`` in ``/proc/self/status``, reset through
  ``/proc/self/clear_refs`` at the start) minus the resident size at the start; it counts everything the
  process touched during training (allocator caches too). Where the reset is not possible the
  lifetime peak (``ru_maxrss``) minus the start RSS is reported and ``memory_method`` says so.
  (``tracemalloc`` would not see torch's tensor memory, which bypasses Python's allocator.) The CPU delta
  is only meaningful for the first training in a fresh process (memory freed by an earlier run is reused
  without raising the RSS): benchmark each configuration in its own process. ``peak_process_bytes`` gives
  the absolute figure beside it (CPU: peak RSS; CUDA: ``torch.cuda.max_memory_reserved``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from spkit.io import torch_save
from spkit.prompt.model import PromptedULM
from spkit.prompt.tasks import Collator, TaskExample, length_order

STATE_NAME = "train_state.pt"


@dataclass
class TrainConfig:
    """Training settings.

    Attributes:
        lr: Adam learning rate (prototype: 5e-2; SpeechPrompt: 5e-3).
        adam_betas: Adam's betas (SpeechPrompt: (0.9, 0.98), fairseq's ``--adam-betas``).
        batch_size: examples per step (SpeechPrompt: 32).
        max_epochs: epochs at most.
        patience: stop after this many epochs without a lower validation loss (0: never stop early).
        seed: data order (and, through the caller, prompt initialisation).
        weight_decay: Adam weight decay.
        grad_clip: clip the gradient norm of the trainable parameters (None: no clipping).
        metric_every: compute the validation metric every N epochs (0: never; ASR beam search is slow).
        eval_batch_size: batch size for validation.
        bf16: autocast to bfloat16 on CUDA.
        reparam_lr_scale: learning-rate factor for a reparameterisation MLP and its embedding (measured on
            the toy task: lr 5e-2 on the MLP stayed at chance, 5e-3 learned).
        checkpoint_activations: recompute each frozen uLM block in backward instead of keeping its
            activations (memory for compute: see bench/prompt_memory.py).
        length_buckets: 0: batches are consecutive slices of the epoch's random order; k > 0: that order
            is cut into chunks of k batches, each chunk sorted by length before it is split, and the batches
            are shuffled (fairseq-style bucketing: a batch pads little, so an epoch costs less; see
            :func:`epoch_batches`).
    """

    lr: float = 5e-2
    adam_betas: tuple[float, float] = (0.9, 0.98)
    batch_size: int = 32
    max_epochs: int = 10
    patience: int = 3
    seed: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    metric_every: int = 1
    eval_batch_size: int = 64
    bf16: bool = True
    reparam_lr_scale: float = 0.1
    checkpoint_activations: bool = False
    length_buckets: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """What :func:`train` returns (the model holds the best-validation-loss state afterwards).

    Attributes:
        log: one dict per epoch: ``epoch, train_loss, valid_loss, valid_metric`` (None when not computed),
            ``seconds``, ``steps``.
        best_epoch, best_valid_loss: the epoch whose state was kept.
        stopped_early: the patience ran out.
        peak_memory_bytes, memory_method, peak_process_bytes: see the module docstring.
        wall_seconds: training time, summed over resumed runs.
        num_trainable: exact trainable parameter count.
    """

    log: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_loss: float = math.inf
    stopped_early: bool = False
    peak_memory_bytes: int = 0
    memory_method: str = ""
    peak_process_bytes: int = 0
    wall_seconds: float = 0.0
    num_trainable: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------------

def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory during a block of work (see the module docstring for the method per device)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.method = ""
        self.start = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        rss = _status_kib("VmRSS")
        self.start = (rss or 0) * 1024
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # 5 = reset the peak RSS (VmHWM) to the current RSS
            self.method = "VmHWM after clear_refs minus start RSS"
        except OSError:
            self.method = "ru_maxrss (lifetime peak) minus start RSS"
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def process_bytes(self) -> int:
        """CUDA: peak reserved by the caching allocator; CPU: peak RSS of the process."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_reserved(self.device))
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            return hwm * 1024
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.method.startswith("VmHWM"):
            hwm = _status_kib("VmHWM")
            if hwm is not None:
                return max(0, hwm * 1024 - self.start)
        import resource
        return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.start)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The data order of ``epoch``: a permutation of range(n) from ``seed`` and ``epoch`` only."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, buckets: int = 0
                  ) -> list[list[int]]:
    """The batches (example indices) of ``epoch``, from ``seed`` and ``epoch`` only.

    ``buckets`` = 0: consecutive slices of :func:`epoch_order`. ``buckets`` = k > 0: that order cut into
    chunks of k * batch_size examples, each chunk sorted by ``lengths`` (stable) and split into batches,
    the batches then shuffled. Either way every example is in exactly one of ceil(n / batch_size) batches.
    """
    order = epoch_order(len(lengths), seed, epoch)
    if buckets <= 0:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    span = buckets * batch_size
    batches: list[list[int]] = []
    for c in range(0, len(order), span):
        chunk = sorted(order[c:c + span], key=lambda i: lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) + 1)
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def _autocast(device: torch.device, cfg: TrainConfig) -> Any:
    enabled = cfg.bf16 and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def validation_loss(model: PromptedULM, examples: Sequence[TaskExample], collator: Collator,
                    batch_size: int = 64, bf16: bool = True) -> float:
    """Label-token-weighted mean loss over ``examples`` (the early-stopping criterion)."""
    device = next(model.lm.parameters()).device
    was = model.training
    model.eval()
    total, count = 0.0, 0
    examples = [examples[i] for i in length_order(examples)]  # the sum does not depend on the order
    for i in range(0, len(examples), batch_size):
        batch = collator(examples[i:i + batch_size]).to(device)
        with _autocast(device, TrainConfig(bf16=bf16)):
            loss, n = model.loss(batch)
        total += float(loss) * int(n)
        count += int(n)
    model.train(was)
    return total / max(count, 1)


def train(model: PromptedULM, data: Mapping[str, Sequence[TaskExample]], collator: Collator,
          cfg: TrainConfig | None = None, *, out_dir: str | os.PathLike | None = None, resume: bool = True,
          progress: bool = True) -> TrainResult:
    """Train the prompt of ``model`` on ``data["train"]``, early-stopping on ``data["valid"]``.

    Args:
        model: the prompted uLM (already initialised, on its device).
        data: ``{"train": [...], "valid": [...]}`` task examples.
        collator: builds batches (the same spec/verbalizer as ``model``).
        out_dir: where ``train_state.pt`` goes (None: no checkpoints, no resume).
        resume: continue from ``out_dir/train_state.pt`` when present.
    Returns:
        :class:`TrainResult`; afterwards ``model`` holds the state of the best validation loss.
    """
    from tqdm.auto import tqdm

    from spkit.prompt.decode import evaluate

    cfg = cfg or TrainConfig()
    for split in ("train", "valid"):
        if not data.get(split):
            raise ValueError(f"train: no {split!r} examples")
    train_set, valid_set = list(data["train"]), list(data["valid"])
    device = next(model.lm.parameters()).device
    model.lm.checkpoint_activations = cfg.checkpoint_activations
    params = model.trainable_parameters()
    if not params:
        raise ValueError("train: the model has no trainable parameters")
    named = model.named_trainable_parameters()
    reparam = [p for n, p in named if n.startswith(("prompt.mlp.", "prompt.embedding"))]
    direct = [p for n, p in named if not n.startswith(("prompt.mlp.", "prompt.embedding"))]
    groups = [{"params": direct, "lr": cfg.lr}]
    if reparam:
        groups.append({"params": reparam, "lr": cfg.lr * cfg.reparam_lr_scale})
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay)
    result = TrainResult(num_trainable=model.num_trainable())
    best_state = model.prompt_state()
    bad_epochs, start_epoch = 0, 0
    state_path = Path(out_dir) / STATE_NAME if out_dir is not None else None

    if state_path is not None and resume and state_path.is_file():
        st = torch.load(state_path, map_location=device, weights_only=True)
        if st.get("ulm_fingerprint") != model.ulm_fingerprint():
            raise ValueError(f"{state_path}: made for the uLM {st.get('ulm_fingerprint')}, this model's uLM "
                             f"is {model.ulm_fingerprint()}; use another out_dir or resume=False")
        try:
            model.load_prompt_state(st["prompt_state"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"{state_path}: does not fit this prompt ({e})") from None
        opt.load_state_dict(st["optimizer"])
        best_state = st["best_state"]
        bad_epochs, start_epoch = int(st["bad_epochs"]), int(st["epoch"])
        result = TrainResult(**{**st["result"], "num_trainable": model.num_trainable()})

    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    lengths = [len(e.units) for e in train_set]
    model.train()
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        for epoch in range(start_epoch, cfg.max_epochs):
            if result.stopped_early:
                break
            te = time.perf_counter()
            batches = epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.length_buckets)
            total, count = 0.0, 0
            bar = tqdm(batches, desc=f"prompt {model.spec.name} epoch {epoch + 1}",
                       disable=not progress, leave=False)
            # Prompt dropout draws from the global RNG: seed it per epoch (restored afterwards) so a resumed
            # run draws the same masks as an uninterrupted one.
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(int(cfg.seed) * 1_000_003 + epoch + 17)
                for idx in bar:
                    batch = collator([train_set[i] for i in idx])
                    batch = batch.to(device)
                    with _autocast(device, cfg):
                        loss, n = model.loss(batch)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    opt.step()
                    total += float(loss.detach()) * int(n)
                    count += int(n)
                    bar.set_postfix(loss=f"{total / max(count, 1):.3f}")
            bar.close()
            valid_loss = validation_loss(model, valid_set, collator, cfg.eval_batch_size, cfg.bf16)
            metric = None
            if cfg.metric_every and (epoch + 1) % cfg.metric_every == 0:
                metric = evaluate(model, valid_set, collator, batch_size=cfg.eval_batch_size)["value"]
                model.train()
            if valid_loss < result.best_valid_loss:
                result.best_valid_loss, result.best_epoch, bad_epochs = valid_loss, epoch + 1, 0
                best_state = model.prompt_state()
            else:
                bad_epochs += 1
            result.stopped_early = bool(cfg.patience) and bad_epochs >= cfg.patience
            result.log.append({"epoch": epoch + 1, "train_loss": total / max(count, 1),
                               "valid_loss": valid_loss, "valid_metric": metric,
                               "seconds": round(time.perf_counter() - te, 3), "steps": steps_per_epoch})
            result.wall_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            result.peak_memory_bytes = max(result.peak_memory_bytes, mem.peak_bytes())
            result.memory_method = mem.method
            result.peak_process_bytes = max(result.peak_process_bytes, mem.process_bytes())
            if progress:
                shown = f" {model.spec.metric} {metric:.4f}" if metric is not None else ""
                tqdm.write(f"epoch {epoch + 1}: train {result.log[-1]['train_loss']:.4f} "
                           f"valid {valid_loss:.4f}{shown}")
            if state_path is not None:
                torch_save({"epoch": epoch + 1, "prompt_state": model.prompt_state(),
                            "optimizer": opt.state_dict(), "best_state": best_state, "bad_epochs": bad_epochs,
                            "result": result.to_dict(), "config": cfg.to_dict(),
                            "ulm_fingerprint": model.ulm_fingerprint()}, state_path)
    model.load_prompt_state(best_state)
    model.eval()
    return result


def prepare_task(task: str, units_dir: str | os.PathLike, dictionary: Any, *, verbalizer: str = "frequency",
                 seed: int = 0, max_len: int | None = None, intent_mode: str = "slots",
                 tokens_per_atom: int | None = None, truncate: str = "right",
                 splits: Sequence[str] = ("train", "valid", "test"), loss_positions: str = "label_eos",
                 balance: bool = False) -> tuple[dict[str, list[TaskExample]], Any]:
    """Load a task's unit files and build everything around them in one call.

    Returns ``(data, collator)``: ``data`` is ``{split: examples}`` (labels checked against the spec),
    ``collator.spec`` and ``collator.verbalizer`` are the task spec and verbalizer built from the training
    split; ``dictionary`` is the uLM's :class:`spkit.ulm.UnitDictionary`; ``max_len`` usually the uLM's
    ``max_positions``. ``balance``: replace train and valid by s3prl's class-balanced draws
    (:func:`spkit.data.speech_commands.class_balanced_draws`, seeded by ``seed``) before anything is
    counted, as SpeechPrompt's KS data are (so the frequency verbalizer sees the balanced counts too).
    """
    from spkit.prompt.tasks import Collator, build_spec, check_labels, load_task
    from spkit.prompt.verbalizer import build_verbalizer

    data = load_task(task, units_dir, splits)
    if balance:
        from spkit.data.speech_commands import class_balanced_draws

        data = {s: class_balanced_draws(v, [e.label for e in v], seed=seed, split=s)
                if s in ("train", "valid") else v for s, v in data.items()}
    # The label inventory is the data set's (every split), as FSC's 31 intents are: a small corpus whose
    # training split misses a rare label must still be able to score it. Counts come from train only.
    spec = build_spec(task, [e for split in data.values() for e in split], intent_mode=intent_mode)
    check_labels(spec, data, units_dir)
    verb = build_verbalizer(verbalizer, spec, dictionary, data["train"], seed=seed,
                            tokens_per_atom=tokens_per_atom)
    return data, Collator(spec, verb, dictionary, max_len=max_len, truncate=truncate,
                          loss_positions=loss_positions)

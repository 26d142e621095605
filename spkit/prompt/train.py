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
* bf16 autocast on CUDA (trainable parameters stay fp32); on CPU fp32, or bf16 with ``cpu_bf16`` where the
  CPU computes bf16 natively (:func:`cpu_has_native_bf16`).
* One stopping rule for every method (prompts, fine-tuning, and the downstream head of
  :mod:`spkit.prompt.downstream`): after each epoch the validation split is scored
  (``stop_on="valid_metric"``, the default: the task metric with the validation decoder of
  :func:`validation_decoder`, greedy until ``</s>`` with exact match for
  classification, as the test's reported value; or ``stop_on="valid_loss"``);
  the best epoch's state is kept (a tie on the metric goes to the lower validation loss: :func:`improved`)
  and training stops after ``patience`` epochs without improvement, or at
  ``max_epochs``. :class:`TrainResult` records the epochs run and the stop reason (``patience`` or
  ``max_epochs``).
* Settings are part of a run's identity: ``train_state.pt`` stores the settings it was made with
  (:class:`TrainConfig` plus the caller's ``settings``: prompt form, length, task data...); a saved state made
  with other settings is not resumed but trained again from the start. Only the epoch cap may differ (a state
  of epoch e continues under a cap >= e, exactly as an uninterrupted run).
* Peak memory: CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensors only,
  not the allocator's cache). CPU: the peak of the bytes held by tensor storages *allocated during the
  run* (:class:`TensorMemoryTracker`, a ``TorchDispatchMode`` that counts every op's new output storage and
  un-counts it when the storage is freed): weights and data that existed before the run are not counted,
  gradients, optimizer state, activations and batches are, and the figure does not depend on what earlier
  runs in the process allocated or freed (the resident set size would). ``peak_process_bytes`` gives the
  absolute figure beside it (CPU: the process's peak RSS, ``VmHWM``; CUDA: ``max_memory_reserved``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from tqdm.auto import tqdm

from spkit.data.speech_commands import class_balanced_draws
from spkit.errors import CheckpointError
from spkit.io import torch_save
from spkit.prompt.decode import evaluate
from spkit.prompt.model import PromptedULM
from spkit.prompt.tasks import Collator, TaskExample, build_spec, check_labels, length_order, load_task
from spkit.prompt.verbalizer import build_verbalizer

STATE_NAME = "train_state.pt"
STOP_ON: tuple[str, ...] = ("valid_metric", "valid_loss")
DECAYS: tuple[str, ...] = ("none", "linear", "cosine")


def lr_factor(step: int, total: int, warmup: int = 0, decay: str = "none", floor: float = 0.0) -> float:
    """The learning-rate multiplier of optimizer step ``step`` (0-based) of ``total``: linear warmup over
    ``warmup`` steps, then constant (``none``) or a ``linear`` / ``cosine`` decay to ``floor`` at
    ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if decay == "none":
        return 1.0
    span = max(1, total - warmup)
    t = min(1.0, max(0.0, (step - warmup) / span))
    shape = 1.0 - t if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
    return floor + (1.0 - floor) * shape


@dataclass
class TrainConfig:
    """Training settings.

    Attributes:
        lr: Adam learning rate (prototype: 5e-2; SpeechPrompt: 5e-3).
        adam_betas: Adam's betas (SpeechPrompt: (0.9, 0.98), fairseq's ``--adam-betas``).
        batch_size: examples per step (SpeechPrompt: 32).
        max_epochs: epochs at most (a cap: the stopping rule is ``patience``).
        patience: stop after this many epochs without a better validation score (0: never stop early).
        stop_on: ``valid_metric`` (the task metric on the validation split, decoded by
            :func:`validation_decoder`) or ``valid_loss`` (label-token loss): what picks the best epoch and
            what the patience counts.
        valid_beam: sequence tasks: beam width of the validation metric (1: greedy, constrained to the
            verbalizer's codes).
        valid_max_len: sequence tasks: most output tokens when scoring validation (None: the evaluator's
            default; runs pass :func:`spkit.prompt.decode.output_length_cap` of the training split).
        seed: data order (and, through the caller, prompt initialisation).
        weight_decay: Adam weight decay.
        grad_clip: clip the gradient norm of the trainable parameters (None: no clipping).
        metric_every: with ``stop_on="valid_loss"``: also compute the validation metric every N epochs
            (0: never); with ``valid_metric`` it is computed every epoch.
        eval_batch_size: batch size for validation.
        bf16: autocast to bfloat16 on CUDA.
        cpu_bf16: autocast to bfloat16 on a CPU too, where it computes bf16 natively (AVX512-bf16 or AMX:
            about 1.5x faster steps of the d=256 uLM on one core, measured); elsewhere float32 (emulated bf16
            is slower). Trainable parameters, the optimizer and the loss stay float32.
        reparam_lr_scale: learning-rate factor for a reparameterisation MLP and its embedding (measured on
            the toy task: lr 5e-2 on the MLP stayed at chance, 5e-3 learned).
        checkpoint_activations: recompute each frozen uLM block in backward instead of keeping its
            activations (memory for compute: see bench/prompt_memory.py).
        length_buckets: 0: batches are consecutive slices of the epoch's random order; k > 0: that order
            is cut into chunks of k batches, each chunk sorted by length before it is split, and the batches
            are shuffled (fairseq-style bucketing: a batch pads little, so an epoch costs less; see
            :func:`epoch_batches`).
        warmup_steps: the learning rate rises linearly from ``lr / warmup_steps`` to ``lr`` over these steps
            (0: none).
        decay: after warmup, ``none`` keeps ``lr``; ``linear`` / ``cosine`` decay it to ``lr * min_lr_ratio``
            at the cap (``max_epochs`` epochs), so a run stopped by patience stops with its lr part-way down.
        min_lr_ratio: the decayed rate's floor, as a fraction of ``lr``.
        head_lr_scale: learning-rate factor for a learnable verbalizer's head (a linear map over the
            vocabulary, whose best rate differs from the prompts').
    """

    lr: float = 5e-2
    adam_betas: tuple[float, float] = (0.9, 0.98)
    batch_size: int = 32
    max_epochs: int = 10
    patience: int = 3
    stop_on: str = "valid_metric"
    valid_beam: int = 1
    valid_max_len: int | None = None
    seed: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    metric_every: int = 1
    eval_batch_size: int = 64
    bf16: bool = True
    cpu_bf16: bool = False
    reparam_lr_scale: float = 0.1
    checkpoint_activations: bool = False
    length_buckets: int = 0
    warmup_steps: int = 0
    decay: str = "none"
    min_lr_ratio: float = 0.0
    head_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.stop_on not in STOP_ON:
            raise ValueError(f"TrainConfig: stop_on {self.stop_on!r} is not one of {STOP_ON}")
        if self.decay not in DECAYS:
            raise ValueError(f"TrainConfig: decay {self.decay!r} is not one of {DECAYS}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validation_decoder(kind: str, beam: int = 1) -> str:
    """The decoder behind the validation metric, as results.json names it: classification ``greedy_exact``
    (the test's reported decoder), sequence ``beam<k>`` (``beam1``: greedy)."""
    return "greedy_exact" if kind == "classification" else f"beam{beam}"


@dataclass
class TrainResult:
    """What :func:`train` returns (the model holds the best-validation-loss state afterwards).

    Attributes:
        log: one dict per epoch: ``epoch, train_loss, valid_loss, valid_metric`` (None when not computed),
            ``seconds``, ``steps``.
        best_epoch: the epoch whose state was kept (best validation score under ``stop_on``).
        best_valid_loss, best_valid_metric: that epoch's validation loss and metric (None if not computed).
        stopped_early: the patience ran out.
        epochs_run: epochs trained in all (resumed runs included).
        stop_reason: ``patience`` (no better validation score for ``patience`` epochs) or ``max_epochs``.
        peak_memory_bytes, memory_method, peak_process_bytes: see the module docstring.
        wall_seconds: training time, summed over resumed runs.
        num_trainable: exact trainable parameter count.
    """

    log: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_loss: float = math.inf
    best_valid_metric: float | None = None
    stopped_early: bool = False
    epochs_run: int = 0
    stop_reason: str = ""
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


class TensorMemoryTracker(TorchDispatchMode):
    """Bytes held by CPU tensor storages created while active, and their peak.

    Every op's output storage that is new is counted once (views and in-place results share a counted
    storage) and un-counted by a ``weakref.finalize`` when the storage is freed, so the figure covers the
    run's own allocations only: gradients, optimizer state, activations kept for backward, batches.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, key: int, nbytes: int) -> None:
        if self.live.pop(key, None) is not None:
            self.current -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                st = t.untyped_storage()
                key, nbytes = st.data_ptr(), st.nbytes()
                if nbytes == 0 or key in self.live:
                    continue
                self.live[key] = nbytes
                self.current += nbytes
                self.peak = max(self.peak, self.current)
                weakref.finalize(st, self._free, key, nbytes)
        return out


class PeakMemory:
    """Peak memory during a block of work (see the module docstring for the method per device)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.method = ""
        self.tracker: TensorMemoryTracker | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "torch.cuda.max_memory_allocated after reset"
            return self
        self.tracker = TensorMemoryTracker()
        self.tracker.__enter__()
        self.method = "peak bytes of CPU tensor storages allocated in the run"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tracker is not None:
            self.tracker.__exit__(*exc)
        return None

    def process_bytes(self) -> int:
        """CUDA: peak reserved by the caching allocator; CPU: peak RSS of the process."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_reserved(self.device))
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            return hwm * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return self.tracker.peak if self.tracker is not None else 0


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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-bf16 or AMX tiles)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def step_autocast(device: torch.device, cfg: TrainConfig) -> Any:
    """The autocast context of a training step under ``cfg``: bf16 on CUDA with ``bf16``; on the CPU with
    ``cpu_bf16`` where it computes bf16 natively; otherwise disabled (float32)."""
    if device.type == "cuda":
        enabled = cfg.bf16
    else:
        enabled = cfg.cpu_bf16 and cpu_has_native_bf16()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def validation_loss(model: PromptedULM, examples: Sequence[TaskExample], collator: Collator,
                    batch_size: int = 64, bf16: bool = True, cpu_bf16: bool = False) -> float:
    """Label-token-weighted mean loss over ``examples`` (the early-stopping criterion)."""
    device = next(model.lm.parameters()).device
    was = model.training
    model.eval()
    total, count = 0.0, 0
    examples = [examples[i] for i in length_order(examples)]  # the sum does not depend on the order
    for i in range(0, len(examples), batch_size):
        batch = collator(examples[i:i + batch_size]).to(device)
        with step_autocast(device, TrainConfig(bf16=bf16, cpu_bf16=cpu_bf16)):
            loss, n = model.loss(batch)
        total += float(loss) * int(n)
        count += int(n)
    model.train(was)
    return total / max(count, 1)


def improved(metric: float | None, loss: float | None, best_metric: float | None, best_loss: float | None,
             on_metric: bool, lower_is_better: bool) -> bool:
    """The stopping rule's comparison, for every method: a better validation metric (``on_metric``), or the
    same metric with a lower validation loss; or (``valid_loss``) a lower validation loss.

    The tie-break matters on a metric plateau: a prompt whose greedy decoding still says the majority class
    while its loss falls is learning, and patience spent on that plateau stopped prompts before they left
    it (KWS on spkit-base: three flat epochs at 18.9 % while the validation loss fell 1.29 -> 1.23).
    """
    if not on_metric:
        assert loss is not None
        return best_loss is None or loss < best_loss
    assert metric is not None
    if best_metric is None:
        return True
    if metric != best_metric:
        return metric < best_metric if lower_is_better else metric > best_metric
    return loss is not None and best_loss is not None and loss < best_loss


def train(model: PromptedULM, data: Mapping[str, Sequence[TaskExample]], collator: Collator,
          cfg: TrainConfig | None = None, *, out_dir: str | os.PathLike | None = None, resume: bool = True,
          progress: bool = True, settings: Mapping[str, Any] | None = None) -> TrainResult:
    """Train the trainable part of ``model`` on ``data["train"]`` under the stopping rule of ``cfg``.

    Args:
        model: the prompted uLM (already initialised, on its device).
        data: ``{"train": [...], "valid": [...]}`` task examples.
        collator: builds batches (the same spec/verbalizer as ``model``).
        out_dir: where ``train_state.pt`` goes (None: no checkpoints, no resume).
        resume: continue from ``out_dir/train_state.pt`` when it was made with the same settings (``cfg``
            and ``settings``) and the same uLM; a state made with other settings is trained over.
        settings: what else identifies the run (prompt form, length, verbalizer, data...), plain data.
    Returns:
        :class:`TrainResult`; afterwards ``model`` holds the state of the best validation epoch.
    """
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
    reparam_names, head_names = ("prompt.mlp.", "prompt.embedding"), ("verbalizer.head.",)
    reparam = [p for n, p in named if n.startswith(reparam_names)]
    head = [p for n, p in named if n.startswith(head_names)]
    direct = [p for n, p in named if not n.startswith((*reparam_names, *head_names))]
    groups = [{"params": direct, "lr": cfg.lr, "base_lr": cfg.lr}]
    if reparam:
        groups.append({"params": reparam, "lr": cfg.lr * cfg.reparam_lr_scale,
                       "base_lr": cfg.lr * cfg.reparam_lr_scale})
    if head:
        rate = cfg.lr * cfg.head_lr_scale
        groups.append({"params": head, "lr": rate, "base_lr": rate})
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay)
    result = TrainResult(num_trainable=model.num_trainable())
    best_state = model.prompt_state()
    bad_epochs, start_epoch = 0, 0
    state_path = Path(out_dir) / STATE_NAME if out_dir is not None else None
    # The run's identity: a saved state made with any other setting is not resumed (json round trip: tuples
    # and lists compare equal after loading). The epoch cap is left out: the first epochs of a run do not
    # depend on it, so a state of epoch e <= max_epochs continues (a higher cap extends a finished run).
    # A decaying schedule is tied to the cap, so there the cap is part of the identity.
    cap = None if cfg.decay == "none" else cfg.max_epochs
    identity = json.loads(json.dumps({"config": {**cfg.to_dict(), "max_epochs": cap},
                                      "settings": dict(settings or {})}, sort_keys=True, default=str))
    on_metric = cfg.stop_on == "valid_metric"
    lower = model.spec.lower_is_better if on_metric else True

    if state_path is not None and resume and state_path.is_file():
        try:
            st = torch.load(state_path, map_location=device, weights_only=True)
        except Exception as e:  # truncated or damaged: say which file, not a pickle traceback
            raise CheckpointError(state_path, f"not a readable training state ({type(e).__name__}: {e}); "
                                  "delete it to train this run again") from None
        if not isinstance(st, dict):
            raise CheckpointError(state_path, "not an spkit training state (expected a dict)")
        if st.get("ulm_fingerprint") != model.ulm_fingerprint():
            raise ValueError(f"{state_path}: made for the uLM {st.get('ulm_fingerprint')}, this model's uLM "
                             f"is {model.ulm_fingerprint()}; use another out_dir or resume=False")
        if st.get("identity") != identity or int(st.get("epoch", 0)) > cfg.max_epochs:
            logging.getLogger(__name__).info("%s: made with other settings; training again", state_path)
        else:
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
    sequence = model.spec.kind == "sequence"
    model.train()
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        for epoch in range(start_epoch, cfg.max_epochs):
            if result.stopped_early:
                break
            te = time.perf_counter()
            batches = epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.length_buckets)
            total, count = 0.0, 0
            bar = tqdm(batches, desc=f"{model.spec.name} epoch {epoch + 1}", disable=not progress,
                       leave=False)
            # Prompt dropout draws from the global RNG: seed it per epoch (restored afterwards) so a resumed
            # run draws the same masks as an uninterrupted one.
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(int(cfg.seed) * 1_000_003 + epoch + 17)
                for k, idx in enumerate(bar):
                    # the schedule is a function of the global step: a resumed run follows it exactly
                    factor = lr_factor(epoch * steps_per_epoch + k, cfg.max_epochs * steps_per_epoch,
                                       cfg.warmup_steps, cfg.decay, cfg.min_lr_ratio)
                    for group in opt.param_groups:
                        group["lr"] = group["base_lr"] * factor
                    batch = collator([train_set[i] for i in idx])
                    batch = batch.to(device)
                    with step_autocast(device, cfg):
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
            valid_loss = validation_loss(model, valid_set, collator, cfg.eval_batch_size, cfg.bf16,
                                         cfg.cpu_bf16)
            metric = None
            if on_metric or (cfg.metric_every and (epoch + 1) % cfg.metric_every == 0):
                # The validation decoder: classification greedy_exact (the test's value), sequence beam.
                mode = "beam" if sequence else "greedy"
                metric = evaluate(model, valid_set, collator, batch_size=cfg.eval_batch_size, mode=mode,
                                  beam=cfg.valid_beam, max_len=cfg.valid_max_len)["value"]
                model.train()
            best = result.best_epoch > 0
            if improved(metric, valid_loss, result.best_valid_metric if best else None,
                        result.best_valid_loss if best else None, on_metric, lower):
                result.best_epoch, bad_epochs = epoch + 1, 0
                result.best_valid_loss, result.best_valid_metric = valid_loss, metric
                best_state = model.prompt_state()
            else:
                bad_epochs += 1
            result.stopped_early = bool(cfg.patience) and bad_epochs >= cfg.patience
            result.epochs_run = epoch + 1
            result.stop_reason = "patience" if result.stopped_early else "max_epochs"
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
                            "result": result.to_dict(), "config": cfg.to_dict(), "identity": identity,
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
    ``collator.spec`` and ``collator.verbalizer`` are the task spec (its label set) and verbalizer built from
    the training split alone; ``dictionary`` is the uLM's :class:`spkit.ulm.UnitDictionary`; ``max_len``
    usually the uLM's ``max_positions``. ``balance``: replace train and valid by s3prl's class-balanced draws
    (:func:`spkit.data.speech_commands.class_balanced_draws`, seeded by ``seed``) before anything is
    counted, as SpeechPrompt's KS data are (so the frequency verbalizer sees the balanced counts too).
    """
    data = load_task(task, units_dir, splits)
    if balance:
        data = {s: class_balanced_draws(v, [e.label for e in v], seed=seed, split=s)
                if s in ("train", "valid") else v for s, v in data.items()}
    # The label set is the training split's: no test label reaches a choice. A valid or test label never
    # seen in training is an error naming it and its file (ASR: an unseen character is <unk>).
    spec = build_spec(task, data["train"], intent_mode=intent_mode)
    check_labels(spec, data, units_dir)
    verb = build_verbalizer(verbalizer, spec, dictionary, data["train"], seed=seed,
                            tokens_per_atom=tokens_per_atom)
    return data, Collator(spec, verb, dictionary, max_len=max_len, truncate=truncate,
                          loss_positions=loss_positions)

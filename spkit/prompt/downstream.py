"""The SUPERB-style downstream baseline on the frozen SSL model (what the paper calls fine-tuning a
specialised downstream model).

The frozen model's layers are computed once per clip (:class:`LayerFeatureCache`, all layers
``(L, frames, d)`` float16, in memory and optionally on disk), combined by a learned softmax-weighted sum
(:class:`WeightedLayerSum`), then ``Linear(d, 256)`` -> mean over valid frames -> ``Linear(256, C)`` per
head (:class:`DownstreamClassifier`; intent has one head per slot and is correct only when all three
are). ASR: a BiLSTM (or linear) CTC head on the weighted sum (:class:`DownstreamCTC`), greedy CTC
decoding, WER and CER. SF (as SUPERB does it): the same CTC head over the slot-tagged transcript's
symbols (characters plus ``B-<type>`` and slot-end symbols, :mod:`spkit.prompt.slots`), scored by slot-type
F1 and slot-value CER. :func:`train_downstream` trains one under the same stopping rule as the prompts
(:class:`spkit.prompt.train.TrainConfig`: the validation metric or loss, patience, an epoch cap), keeps the
best validation epoch, and reports the test metric with trainable parameters, peak memory and time.
Deterministic for a given seed (on the CPU).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from spkit.audio import AudioError, load_audio
from spkit.data.base import DataError
from spkit.data.speech_commands import load_segment
from spkit.io import atomic_path
from spkit.prompt.decode import error_rate
from spkit.prompt.results import RunResult, metric_name, run_result
from spkit.prompt.slots import slot_metrics, symbols_to_tagged, tagged_symbols
from spkit.prompt.tasks import INTENT_SLOTS, UNK_CHAR, UNK_DECODED, TaskExample, TaskSpec
from spkit.prompt.train import STOP_ON, PeakMemory, improved

log = logging.getLogger(__name__)

WORD_BOUNDARY = "|"  # fairseq's letter convention, as spkit.data.labels
CTC_BLANK = 0


# --------------------------------------------------------------------------------------------
# Features of the frozen SSL model, computed once per clip
# --------------------------------------------------------------------------------------------

class LayerFeatureCache:
    """All layers of a frozen layered extractor per audio file: ``(L, frames, d)`` float16.

    Computed once (``extractor.extract_layers(load_audio(path))``), kept in memory (``in_memory``) and,
    with ``cache_dir``, on disk as ``<dir>/<key[:2]>/<key>.npy`` where the key hashes the extractor's
    fingerprint and the file's resolved path, size and mtime (a changed file or model is a miss).
    """

    def __init__(self, extractor: Any, cache_dir: str | os.PathLike | None = None, in_memory: bool = True):
        for attr in ("extract_layers", "num_layers", "dim", "fingerprint"):
            if not hasattr(extractor, attr):
                raise TypeError(f"LayerFeatureCache: extractor {type(extractor).__name__} has no {attr!r}; "
                                "the downstream baseline needs a layered extractor (HuBERT, tiny HuBERT)")
        self.extractor = extractor
        self.num_layers, self.dim = int(extractor.num_layers), int(extractor.dim)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.in_memory = in_memory
        self._mem: dict[str, Tensor] = {}
        self.n_computed = 0

    def _key(self, path: Path, segment: tuple[float | None, float | None] = (None, None)) -> str:
        st = path.stat()
        blob = json.dumps({"extractor": str(self.extractor.fingerprint), "path": str(path.resolve()),
                           "size": st.st_size, "mtime_ns": st.st_mtime_ns, "v": 1,
                           **({"segment": list(segment)} if segment[0] is not None else {})},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get_example(self, example: TaskExample) -> Tensor:
        """Features of a task example: its file, or only its window (``offset_s``) of a longer file."""
        return self.get(example.path, example.offset_s, example.duration_s)

    def get(self, path: str | os.PathLike, offset_s: float | None = None,
            duration_s: float | None = None) -> Tensor:
        """Features of one file: ``(num_layers, frames, dim)`` float16 on the CPU.

        Raises :class:`~spkit.audio.AudioError` (naming the file) for unreadable audio.
        """
        path = Path(path)
        try:
            key = self._key(path, (offset_s, duration_s))
        except OSError as e:
            raise AudioError(path, f"cannot stat or read ({e.strerror or e})") from e
        if key in self._mem:
            return self._mem[key]
        feats = None
        disk = self.cache_dir / key[:2] / f"{key}.npy" if self.cache_dir is not None else None
        if disk is not None and disk.is_file():
            try:
                arr = np.load(disk, allow_pickle=False)
                if arr.ndim == 3 and arr.shape[0] == self.num_layers and arr.shape[2] == self.dim:
                    feats = torch.from_numpy(arr)
            except (OSError, ValueError) as e:  # a truncated entry is a miss
                log.warning("%s: unreadable feature cache entry (%s); recomputing", disk, e)
        if feats is None:
            with torch.inference_mode():
                if offset_s is not None:
                    wave = load_segment(path, offset_s, duration_s or 1.0, 16_000)
                else:
                    wave = load_audio(path)
                feats = self.extractor.extract_layers(wave).to(torch.float16).cpu()
            if tuple(feats.shape[::2]) != (self.num_layers, self.dim):
                raise ValueError(f"{path}: extractor returned features {tuple(feats.shape)}, expected "
                                 f"({self.num_layers}, frames, {self.dim})")
            self.n_computed += 1
            if disk is not None:
                buf = io.BytesIO()
                np.save(buf, feats.numpy())
                with atomic_path(disk) as tmp:
                    tmp.write_bytes(buf.getvalue())
        if self.in_memory:
            self._mem[key] = feats
        return feats


def pad_features(feats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack per-clip ``(L, T_i, d)`` into ``(B, L, T_max, d)`` float32 (zeros after each clip) and
    frame lengths ``(B,)`` long."""
    lengths = torch.tensor([f.shape[1] for f in feats], dtype=torch.long)
    L, d = feats[0].shape[0], feats[0].shape[2]
    out = torch.zeros(len(feats), L, max(1, int(lengths.max())), d)
    for i, f in enumerate(feats):
        out[i, :, : f.shape[1]] = f.float()
    return out, lengths


# --------------------------------------------------------------------------------------------
# Downstream models
# --------------------------------------------------------------------------------------------

class WeightedLayerSum(nn.Module):
    """SUPERB's featurizer: ``softmax(w)``-weighted sum over layers, ``(B, L, T, d)`` -> ``(B, T, d)``.

    The weights start equal (``w = 0``), so training starts from the layer average.
    """

    def __init__(self, num_layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))

    @property
    def weights(self) -> Tensor:
        """``(L,)`` non-negative layer weights summing to 1."""
        return self.logits.softmax(0)

    def forward(self, feats: Tensor) -> Tensor:
        if feats.dim() != 4 or feats.shape[1] != self.logits.shape[0]:
            raise ValueError(f"WeightedLayerSum: expected (batch, {self.logits.shape[0]}, frames, dim), "
                             f"got {tuple(feats.shape)}")
        return torch.einsum("l,bltd->btd", self.weights.to(feats.dtype), feats)


def frame_mask(lengths: Tensor, max_frames: int) -> Tensor:
    """``(B,)`` frame counts -> ``(B, max_frames)`` bool, True on valid frames."""
    return torch.arange(max_frames, device=lengths.device)[None, :] < lengths[:, None]


class DownstreamClassifier(nn.Module):
    """Weighted layer sum -> ``Linear(d, proj_dim)`` -> mean over valid frames -> one ``Linear`` per head.

    ``forward(feats (B, L, T, d), lengths (B,))`` returns one ``(B, C_h)`` logit tensor per head, in the
    order of ``head_sizes``.
    """

    def __init__(self, num_layers: int, dim: int, head_sizes: Sequence[int], proj_dim: int = 256):
        super().__init__()
        if not head_sizes or any(c < 1 for c in head_sizes):
            raise ValueError(f"DownstreamClassifier: head sizes must be positive, got {list(head_sizes)}")
        self.featurizer = WeightedLayerSum(num_layers)
        self.proj = nn.Linear(dim, proj_dim)
        self.heads = nn.ModuleList(nn.Linear(proj_dim, c) for c in head_sizes)

    def forward(self, feats: Tensor, lengths: Tensor) -> list[Tensor]:
        x = self.proj(self.featurizer(feats))  # (B, T, proj_dim)
        keep = frame_mask(lengths.to(x.device), x.shape[1]).to(x.dtype)
        # Mean over valid frames only; a clip shorter than one frame pools to zeros.
        pooled = (x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp_min(1.0)
        return [head(pooled) for head in self.heads]


class DownstreamCTC(nn.Module):
    """Weighted layer sum -> ``Linear(d, hidden)`` -> BiLSTM (``lstm_layers``, 0 = none) -> ``Linear``
    to ``vocab_size`` CTC outputs (blank = 0).

    ``forward(feats (B, L, T, d), lengths (B,))`` returns log-probabilities ``(B, T, vocab_size)``.
    """

    def __init__(self, num_layers: int, dim: int, vocab_size: int, hidden: int = 128, lstm_layers: int = 1):
        super().__init__()
        self.featurizer = WeightedLayerSum(num_layers)
        self.proj = nn.Linear(dim, hidden)
        self.lstm = (nn.LSTM(hidden, hidden // 2, num_layers=lstm_layers, batch_first=True,
                             bidirectional=True) if lstm_layers > 0 else None)
        self.out = nn.Linear(2 * (hidden // 2) if lstm_layers > 0 else hidden, vocab_size)

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        x = torch.relu(self.proj(self.featurizer(feats)))
        if self.lstm is not None:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True,
                                                       enforce_sorted=False)
            x, _ = self.lstm(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(x, batch_first=True, total_length=feats.shape[2])
        return self.out(x).log_softmax(-1)


def ctc_greedy_decode(log_probs: Tensor, lengths: Tensor, blank: int = CTC_BLANK) -> list[list[int]]:
    """Best path: argmax per frame, collapse repeats, drop blanks. ``(B, T, V)``, ``(B,)`` -> B id lists."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for b in range(best.shape[0]):
        seq, prev = [], None
        for t in best[b, : int(lengths[b])].tolist():
            if t != prev and t != blank:
                seq.append(t)
            prev = t
        out.append(seq)
    return out


# --------------------------------------------------------------------------------------------
# What a downstream model predicts for a task
# --------------------------------------------------------------------------------------------

@dataclass
class DownstreamSpec:
    """The targets of a downstream model for a task (built from the prompt's :class:`TaskSpec`, so both
    predict the same label set on the same examples).

    Attributes:
        task: task name (``kws``, ``intent``, ``lid``, ``asr``).
        heads: classification heads, name -> label list (``{"label": [...]}``; intent: one per slot,
            ``action``/``object``/``location``).
        charset: ASR only: the CTC symbols (word boundary ``|`` first, ``<unk>`` last: any character unseen
            in training); output ``i + 1`` is ``charset[i]``, output 0 is the blank.
        metric: the metric name as results.json spells it (``accuracy``, ``cer (lower is better)``).
        slots: SF: the charset holds slot symbols and targets are the tagged transcript's full symbol
            sequence (:func:`spkit.prompt.slots.tagged_symbols`).
    """

    task: str
    heads: dict[str, list[str]] = field(default_factory=dict)
    charset: list[str] | None = None
    metric: str = "accuracy"
    slots: bool = False

    def __post_init__(self) -> None:
        if (self.charset is None) == (not self.heads):
            raise ValueError(f"DownstreamSpec({self.task}): give either classification heads or a charset")

    @classmethod
    def from_task(cls, spec: TaskSpec) -> DownstreamSpec:
        """Heads from a :class:`~spkit.prompt.tasks.TaskSpec`: one head over its labels; intent in
        ``slots`` mode: one head per slot (values sorted); ASR (``sequence``): a CTC charset."""
        metric = metric_name(spec.metric, spec.lower_is_better)
        if spec.kind == "sequence":
            return cls(spec.name, charset=list(spec.labels), metric=metric,
                       slots=spec.atom_mode == "slot_symbols")
        if spec.atom_mode == "slots":
            values = [sorted({lb.split("|")[i] for lb in spec.labels}) for i in range(len(INTENT_SLOTS))]
            return cls(spec.name, heads=dict(zip(INTENT_SLOTS, values)), metric=metric)
        return cls(spec.name, heads={"label": list(spec.labels)}, metric=metric)

    @property
    def is_ctc(self) -> bool:
        return self.charset is not None

    @property
    def metric_key(self) -> str:
        """The key of :func:`evaluate_downstream`'s output that is the task metric."""
        return self.metric.split(" ")[0]

    @property
    def lower_is_better(self) -> bool:
        return self.is_ctc and not self.slots

    def head_sizes(self) -> list[int]:
        return [len(v) for v in self.heads.values()]

    def targets(self, example: TaskExample) -> list[int]:
        """Class index per head, or the CTC target ids of the transcript (spaces -> word boundary)."""
        where = f"{example.path or example.uid}"
        if self.is_ctc:
            assert self.charset is not None
            index = {c: i + 1 for i, c in enumerate(self.charset)}
            if self.slots:
                symbols = tagged_symbols(example.label)
                missing = sorted({c for c in symbols if c not in index})
                if missing and UNK_CHAR not in index:
                    raise DataError(f"{where}: symbols {missing} are not in the training symbol set")
                return [index.get(c, index.get(UNK_CHAR, 0)) for c in symbols]
            text = example.label.replace(" ", WORD_BOUNDARY)
            missing = sorted({c for c in text if c not in index})
            if missing and UNK_CHAR not in index:
                raise DataError(f"{where}: characters {missing} are not in the training charset")
            return [index.get(c, index.get(UNK_CHAR, 0)) for c in text]
        values = example.label.split("|") if len(self.heads) > 1 else [example.label]
        if len(values) != len(self.heads):
            raise DataError(f"{where}: label {example.label!r} does not have {len(self.heads)} parts "
                            f"({', '.join(self.heads)})")
        out = []
        for (name, labels), value in zip(self.heads.items(), values):
            try:
                out.append(labels.index(value))
            except ValueError:
                raise DataError(f"{where}: label {value!r} of head {name!r} is not in the training label "
                                f"set ({len(labels)} labels)") from None
        return out

    def text(self, ids: Sequence[int]) -> str:
        """CTC output ids (blank excluded) -> text with spaces."""
        assert self.charset is not None
        symbols = [UNK_DECODED if self.charset[i - 1] == UNK_CHAR else self.charset[i - 1] for i in ids]
        if self.slots:
            return symbols_to_tagged(symbols)
        return "".join(symbols).replace(WORD_BOUNDARY, " ").strip()


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

@dataclass
class DownstreamResult:
    """What a downstream run reports: the prompt trainer's report fields (:class:`spkit.prompt.train.
    TrainResult`: ``log``, ``best_epoch``, ``peak_memory_bytes``, ``memory_method``, ``wall_seconds``,
    ``num_trainable``) plus the test metric and the model.

    Attributes:
        task, method, seed: which run.
        metric: metric name as results.json spells it (``accuracy``, ``cer (lower is better)``).
        value: test metric as a fraction.
        valid_value: the selected epoch's validation metric (NaN without a validation split).
        num_trainable: parameters the optimizer updated.
        peak_memory_bytes, memory_method: measured by :class:`spkit.prompt.train.PeakMemory` (CPU: peak
            RSS increase during training; CUDA: ``max_memory_allocated``).
        wall_seconds: training wall-clock seconds (computing the cached features included).
        best_epoch: 1-based epoch whose weights were kept.
        epochs_run: epochs trained; stop_reason: ``patience`` or ``max_epochs`` (as the prompt trainer's).
        log: per epoch ``{"epoch", "train_loss", "valid_metric", "seconds"}``.
        extra: e.g. ``{"test_wer": ...}`` for ASR, per-slot accuracies for intent, ``layer_weights``.
        model: the trained module (best epoch), not serialised.
    """

    task: str
    method: str
    seed: int
    metric: str
    value: float
    valid_value: float
    num_trainable: int
    peak_memory_bytes: int
    memory_method: str
    wall_seconds: float
    best_epoch: int
    epochs_run: int = 0
    stop_reason: str = ""
    log: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)

    def to_run(self) -> RunResult:
        """The row for :func:`spkit.prompt.results.update_results`."""
        return run_result(self.task, self.method, self.seed, self.value, self.metric, self,
                          extra={"valid": self.valid_value, "best_epoch": self.best_epoch,
                                 "epochs_run": self.epochs_run, "stop_reason": self.stop_reason,
                                 **self.extra})




def _batches(n: int, batch_size: int, gen: torch.Generator | None) -> list[list[int]]:
    order = torch.randperm(n, generator=gen).tolist() if gen is not None else list(range(n))
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def evaluate_downstream(model: nn.Module, spec: DownstreamSpec, utts: Sequence[TaskExample],
                        cache: LayerFeatureCache, batch_size: int = 32, device: str | torch.device = "cpu"
                        ) -> dict[str, float]:
    """Metrics of ``model`` on ``utts``: ``{"accuracy"}`` (all heads right; plus per-head accuracies),
    ``{"wer", "cer"}`` or, for SF, ``{"slot_type_f1", "slot_value_cer", "wer", "cer"}`` (the last two on
    the tagged strings)."""
    model.eval()
    correct, per_head = 0, [0] * len(spec.heads)
    refs_w, hyps_w, refs_c, hyps_c = [], [], [], []
    refs_t, hyps_t = [], []
    with torch.no_grad():
        for idx in _batches(len(utts), batch_size, None):
            feats, lengths = pad_features([cache.get_example(utts[i]) for i in idx])
            feats, lengths = feats.to(device), lengths.to(device)
            if spec.is_ctc:
                for i, ids in zip(idx, ctc_greedy_decode(model(feats, lengths), lengths)):
                    ref = utts[i].label  # the real transcript: a character unseen in training stays itself
                    hyp = spec.text(ids)
                    refs_w.append(ref.split())
                    hyps_w.append(hyp.split())
                    refs_c.append(list(ref))
                    hyps_c.append(list(hyp))
                    refs_t.append(ref)
                    hyps_t.append(hyp)
            else:
                preds = torch.stack([lg.argmax(-1).cpu() for lg in model(feats, lengths)], 1)  # (B, heads)
                gold = torch.tensor([spec.targets(utts[i]) for i in idx])
                hit = preds == gold
                correct += int(hit.all(1).sum())
                per_head = [c + int(hit[:, h].sum()) for h, c in enumerate(per_head)]
    if spec.is_ctc:
        rates = {"wer": error_rate(refs_w, hyps_w), "cer": error_rate(refs_c, hyps_c)}
        if spec.slots:
            return {**slot_metrics(hyps_t, refs_t), **rates}
        return rates
    n = max(1, len(utts))
    out = {"accuracy": correct / n}
    if len(spec.heads) > 1:
        out.update({f"accuracy_{name}": c / n for name, c in zip(spec.heads, per_head)})
    return out


def build_downstream(spec: DownstreamSpec, num_layers: int, dim: int, *, proj_dim: int = 256,
                     ctc_hidden: int = 128, lstm_layers: int = 1) -> nn.Module:
    """The model of ``spec``: :class:`DownstreamCTC` for ASR, else :class:`DownstreamClassifier`."""
    if spec.is_ctc:
        assert spec.charset is not None
        return DownstreamCTC(num_layers, dim, len(spec.charset) + 1, hidden=ctc_hidden,
                             lstm_layers=lstm_layers)
    return DownstreamClassifier(num_layers, dim, spec.head_sizes(), proj_dim=proj_dim)


def _loss(model: nn.Module, spec: DownstreamSpec, feats: Tensor, lengths: Tensor,
          targets: Sequence[list[int]], dev: torch.device) -> Tensor:
    if spec.is_ctc:
        tgt = [torch.tensor(t) for t in targets]
        return F.ctc_loss(model(feats, lengths).transpose(0, 1), torch.cat(tgt).to(dev), lengths,
                          torch.tensor([len(t) for t in tgt], device=dev), blank=CTC_BLANK, reduction="mean",
                          zero_infinity=True)
    gold = torch.tensor(list(targets), device=dev)  # (B, heads)
    return sum(F.cross_entropy(lg, gold[:, h]) for h, lg in enumerate(model(feats, lengths)))


@torch.no_grad()
def _valid_loss(model: nn.Module, spec: DownstreamSpec, utts: Sequence[TaskExample], cache: LayerFeatureCache,
                batch_size: int, dev: torch.device) -> float:
    model.eval()
    total = 0.0
    for idx in _batches(len(utts), batch_size, None):
        feats, lengths = pad_features([cache.get_example(utts[i]) for i in idx])
        loss = _loss(model, spec, feats.to(dev), lengths.to(dev), [spec.targets(utts[i]) for i in idx], dev)
        total += float(loss) * len(idx)
    return total / max(1, len(utts))


def train_downstream(spec: DownstreamSpec, splits: Mapping[str, Sequence[TaskExample]], extractor: Any, *,
                     seed: int = 0, max_epochs: int = 20, lr: float = 1e-3, batch_size: int = 32,
                     proj_dim: int = 256, ctc_hidden: int = 128, lstm_layers: int = 1,
                     cache: LayerFeatureCache | None = None, cache_dir: str | os.PathLike | None = None,
                     patience: int = 0, stop_on: str = "valid_metric", device: str | torch.device = "cpu",
                     progress: bool = True) -> DownstreamResult:
    """Train the downstream baseline of ``spec`` on frozen features; returns the test result.

    Args:
        spec: the task's targets (:meth:`DownstreamSpec.from_task`).
        splits: ``{"train": [...], "valid": [...], "test": [...]}`` task examples
            (:func:`spkit.prompt.tasks.load_task`: the prompts' own splits); their ``path`` is the audio
            (any rate, read with :func:`spkit.audio.load_audio`). Missing ``valid``: the last epoch is kept.
        extractor: the frozen layered SSL extractor (``extract_layers(wave) -> (L, frames, d)``).
        seed: initialisation and shuffling seed.
        max_epochs, lr, batch_size: Adam training schedule (``max_epochs`` a cap).
        proj_dim: classifier projection (SUPERB: 256); ctc_hidden, lstm_layers: the ASR head.
        cache / cache_dir: reuse a :class:`LayerFeatureCache` (e.g. across seeds) or create one.
        patience, stop_on: the prompt trainer's stopping rule (:class:`spkit.prompt.train.TrainConfig`):
            the best validation epoch under ``stop_on`` (``valid_metric``: the task metric, greedy CTC for
            ASR; ``valid_loss``) is kept; stop after ``patience`` epochs without improvement (0: never).
        device: where the head trains (features stay cached on the CPU).
        progress: tqdm bar over epochs.

    The features of every split are computed (or read from the cache) first; the reported time and peak
    memory cover the training that follows, so they do not depend on whether an earlier run filled the
    cache (the feature time is ``extra["feature_s"]``).
    """
    if stop_on not in STOP_ON:
        raise ValueError(f"train_downstream: stop_on {stop_on!r} is not one of {STOP_ON}")
    for name in ("train", "test"):
        if not splits.get(name):
            raise DataError(f"train_downstream({spec.task}): the {name!r} split is empty or missing")
    cache = cache if cache is not None else LayerFeatureCache(extractor, cache_dir)
    train_set, valid, test = list(splits["train"]), list(splits.get("valid") or []), list(splits["test"])
    on_metric = stop_on == "valid_metric"
    lower, key = (spec.lower_is_better if on_metric else True), spec.metric_key
    dev = torch.device(device)
    tf = time.perf_counter()
    for u in (*train_set, *valid, *test):
        cache.get_example(u)
    feature_s = time.perf_counter() - tf
    targets = [spec.targets(u) for u in train_set]  # fails early on unknown labels
    t0 = time.perf_counter()
    with PeakMemory(dev) as mem:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_downstream(spec, cache.num_layers, cache.dim, proj_dim=proj_dim,
                                     ctc_hidden=ctc_hidden, lstm_layers=lstm_layers).to(dev)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        best_state, best_loss, best_valid, best_epoch, log, bad = None, None, None, 0, [], 0
        stop_reason, epochs_run = "max_epochs", 0
        bar = tqdm(range(1, max_epochs + 1), desc=f"downstream {spec.task} seed{seed}", disable=not progress)
        for epoch in bar:
            te = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            for idx in _batches(len(train_set), batch_size, gen):
                feats, lengths = pad_features([cache.get_example(train_set[i]) for i in idx])
                loss = _loss(model, spec, feats.to(dev), lengths.to(dev), [targets[i] for i in idx], dev)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, count = total + float(loss.detach()) * len(idx), count + len(idx)
            v = evaluate_downstream(model, spec, valid, cache, batch_size, dev)[key] if valid else None
            vl = _valid_loss(model, spec, valid, cache, batch_size, dev) if valid else None
            epochs_run = epoch
            log.append({"epoch": epoch, "train_loss": total / count, "valid_loss": vl, "valid_metric": v,
                        "seconds": round(time.perf_counter() - te, 3)})
            bar.set_postfix(loss=f"{total / count:.3f}", valid="-" if v is None else f"{v:.3f}")
            if (v if on_metric else vl) is None or improved(v, vl, best_valid, best_loss, on_metric, lower):
                best_state, best_loss, best_valid = copy.deepcopy(model.state_dict()), vl, v
                best_epoch, bad = epoch, 0
            else:
                bad += 1
                if patience and bad >= patience:
                    stop_reason = "patience"
                    break
        assert best_state is not None
        model.load_state_dict(best_state, strict=True)
        wall = time.perf_counter() - t0
        peak = mem.peak_bytes()
    test_metrics = evaluate_downstream(model, spec, test, cache, batch_size, dev)
    extra: dict[str, Any] = {f"test_{k}": v for k, v in test_metrics.items() if k != key}
    if "slot_value_cer" in test_metrics:  # SF: results.json keeps it beside slot_type_f1
        extra["slot_value_cer"] = test_metrics["slot_value_cer"]
    extra["layer_weights"] = [round(float(w), 4) for w in model.featurizer.weights.detach().cpu()]
    extra["feature_s"] = round(feature_s, 3)
    return DownstreamResult(
        task=spec.task, method="downstream", seed=seed, metric=spec.metric, value=test_metrics[key],
        valid_value=float("nan") if best_valid is None else best_valid,
        num_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        peak_memory_bytes=peak, memory_method=mem.method, wall_seconds=wall, best_epoch=best_epoch,
        epochs_run=epochs_run, stop_reason=stop_reason, log=log, extra=extra, model=model)

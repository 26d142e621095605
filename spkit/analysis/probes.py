"""Where does a classification task's information go along the unit pipeline? Supervised probes.

The same small supervised classifier (a frame projection or unit embedding -> BiGRU -> max pool ->
linear) is trained on four views of the same clips and scored on the test split (unseen speakers):

* ``logmel``: 80-band log-mel, per-clip mean-normalised (what an ordinary supervised model hears);
* ``features``: the run's SSL layer, continuous (what k-means clusters);
* ``frame_units``: the k-means unit of every 20 ms frame;
* ``units``: the deduplicated unit sequence (what the uLM and the prompts see).

The drop from one view to the next is the information that step loses for the task; the ``units`` probe
is a practical ceiling for anything built on the units (prompts, fine-tuning). The probe is a diagnostic,
not a baseline of the paper: it is supervised end to end on the task.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from spkit.artifacts import task_unit_dir
from spkit.features.spectral import LogMelExtractor
from spkit.prompt.tasks import build_spec, check_labels, load_task
from spkit.units.encoder import SpeechEncoder

VIEWS = ("logmel", "features", "frame_units", "units")


class ProbeClassifier(nn.Module):
    """``(batch, time)`` unit ids (0 = padding) or ``(batch, time, dim)`` frames -> ``(batch, classes)``."""

    def __init__(self, num_classes: int, *, vocab: int | None = None, dim: int | None = None,
                 hidden: int = 128):
        super().__init__()
        if (vocab is None) == (dim is None):
            raise ValueError("give exactly one of vocab (unit ids) or dim (frame features)")
        self.inp: nn.Module = (nn.Embedding(vocab + 1, hidden, padding_idx=0) if vocab is not None
                               else nn.Linear(dim, hidden))
        self.rnn = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``x`` padded after ``lengths`` ``(batch,)``; the padding changes nothing (packed sequences)."""
        packed = nn.utils.rnn.pack_padded_sequence(self.inp(x), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        h, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True,
                                                total_length=x.shape[1])
        keep = torch.arange(h.shape[1])[None, :] < lengths[:, None]
        return self.out(h.masked_fill(~keep[..., None], float("-inf")).max(1).values)


@dataclass
class ProbeData:
    """One view of one split: padded inputs, lengths and class indices."""

    x: Tensor
    lengths: Tensor
    y: Tensor


def _pad(seqs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([max(1, len(s)) for s in seqs])
    out = torch.zeros(len(seqs), int(lengths.max()), *seqs[0].shape[1:], dtype=seqs[0].dtype)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


def train_probe(data: dict[str, ProbeData], num_classes: int, *, vocab: int | None = None,
                dim: int | None = None, epochs: int = 15, batch_size: int = 64, lr: float = 2e-3,
                seed: int = 0) -> dict[str, float]:
    """Train on ``data["train"]``, keep the epoch with the best validation accuracy, score ``test``."""
    torch.manual_seed(seed)
    model = ProbeClassifier(num_classes, vocab=vocab, dim=dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)

    def accuracy(split: str) -> float:
        d = data[split]
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(d.x[i:i + 256], d.lengths[i:i + 256]).argmax(1)
                              for i in range(0, len(d.y), 256)])
        model.train()
        return float((pred == d.y).float().mean())

    tr = data["train"]
    best = {"valid": -1.0, "test": 0.0, "epoch": 0}
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(len(tr.y), generator=g).split(batch_size):
            loss = nn.functional.cross_entropy(model(tr.x[idx], tr.lengths[idx]), tr.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        valid = accuracy("valid")
        if valid > best["valid"]:
            best = {"valid": valid, "test": accuracy("test"), "epoch": epoch}
    return best


def information_probe(run_dir: str | os.PathLike, task: str = "kws", *, views: Sequence[str] = VIEWS,
                      epochs: int = 15, seeds: Sequence[int] = (0,), progress: bool = True) -> dict[str, Any]:
    """Probe accuracy of each view of ``task``'s clips in a run (see the module docstring).

    Classification tasks (``kws``, ``lid``; ``intent`` as its joint action|object|location class). The inputs
    are computed once; one probe is trained per seed. Returns ``{"task", "classes", "clips": {split: n},
    "views": {view: {"mean", "std", "seeds": [{"valid", "test", "epoch"}, ...]}}}`` (test accuracy mean and
    sample std over seeds).
    """
    unknown = sorted(set(views) - set(VIEWS))
    if unknown:
        raise ValueError(f"unknown probe views {unknown}; choose from {VIEWS}")
    if task == "asr":
        raise ValueError("asr: the probe classifies one label per clip (kws, intent, lid)")
    units_dir = task_unit_dir(run_dir, task)
    examples = load_task(task, units_dir, ("train", "valid", "test"))
    # classes from the training split only; a valid/test class unseen in training is an error naming its file
    spec = build_spec(task, examples)
    check_labels(spec, examples, units_dir)
    labels = list(spec.labels)
    encoder = SpeechEncoder.from_run(run_dir, deduplicate=False)
    logmel = LogMelExtractor(cmvn=True)
    need_audio = bool(set(views) & {"logmel", "features", "frame_units"})
    need_feats = bool(set(views) & {"features", "frame_units"})
    raw: dict[str, dict[str, list[Tensor]]] = {v: {} for v in views}
    ys: dict[str, Tensor] = {}
    for split, exs in examples.items():
        cols: dict[str, list[Tensor]] = {v: [] for v in views}
        for ex in tqdm(exs, desc=f"probe inputs ({split})", disable=not progress, leave=False):
            if need_audio:
                wave = ex.load_audio()
                enc = encoder.encode(wave, with_features=True) if need_feats else None
                if "logmel" in cols:
                    cols["logmel"].append(logmel.extract(wave))
                if "features" in cols:
                    cols["features"].append(enc.features)
                if "frame_units" in cols:
                    cols["frame_units"].append(enc.frame_units + 1)
            if "units" in cols:
                cols["units"].append(torch.tensor(ex.units, dtype=torch.long) + 1)
        for v in views:
            raw[v][split] = cols[v]
        ys[split] = torch.tensor([labels.index(e.label) for e in exs])
    out: dict[str, Any] = {"task": task, "classes": len(labels),
                           "clips": {s: len(e) for s, e in examples.items()}, "views": {}}
    for v in views:
        data = {}
        for split in examples:
            x, lengths = _pad(raw[v][split])
            data[split] = ProbeData(x, lengths, ys[split])
        is_units = v in ("frame_units", "units")
        per_seed = [train_probe(data, len(labels), vocab=encoder.vocab_size if is_units else None,
                                dim=None if is_units else data["train"].x.shape[-1], epochs=epochs, seed=s)
                    for s in seeds]
        tests = [r["test"] for r in per_seed]
        out["views"][v] = {"mean": statistics.mean(tests),
                           "std": statistics.stdev(tests) if len(tests) > 1 else 0.0, "seeds": per_seed}
        if progress:
            r = out["views"][v]
            tqdm.write(f"{task} probe on {v}: test {r['mean']:.3f} ± {r['std']:.3f}")
    return out

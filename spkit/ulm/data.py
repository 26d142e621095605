"""Unit sequences for LM training: GSLM's quantized-unit files and deterministic, resumable batching.

File format (what GSLM's quantizer and spkit's units step write): one utterance per line,
``name|u1 u2 u3 ...``, units as written by k-means (not deduplicated). Names may contain anything but
``|``; the units are split on whitespace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from spkit.ulm.dictionary import EOS_IDX, PAD_IDX, UnitDictionary
from spkit.units.encoder import dedup
from spkit.units.quantize import read_units


def load_sequences(path: str | os.PathLike, deduplicate: bool = True) -> list[tuple[str, list[str]]]:
    """A unit file (:func:`spkit.units.quantize.read_units`) as the uLM's training sequences:
    ``[(name, unit tokens)]`` in file order, repeats collapsed (GSLM's uLM input) unless ``deduplicate`` is
    False. An utterance with no units is kept (as an empty list) so names line up; an empty file is an error.
    """
    units = read_units(path)
    if not units:
        raise ValueError(f"{path}: no utterances")
    return [(name, [str(u) for u in (dedup(seq)[0] if deduplicate else seq)]) for name, seq in units.items()]


def encode_sequences(
    utterances: Sequence[tuple[str, list[str]]], dictionary: UnitDictionary, max_len: int, unk: bool = False
) -> list[Tensor]:
    """Encode utterances as ``[</s>, u1..un, </s>]`` and cut them into pieces of at most ``max_len + 1``
    tokens (inputs and targets of ``max_len`` each, overlapping by one token). Empty utterances dropped."""
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2, got {max_len}")
    seqs = []
    for _name, units in utterances:
        if not units:
            continue
        ids = torch.tensor([EOS_IDX, *dictionary.encode(units, unk=unk), EOS_IDX], dtype=torch.long)
        for start in range(0, len(ids) - 1, max_len):
            seqs.append(ids[start : start + max_len + 1])
    return seqs


def collate(seqs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Right-pad sequences of length n_i + 1 into (inputs (B, T), targets (B, T)) with pad_idx."""
    T = max(len(s) for s in seqs) - 1
    inputs = torch.full((len(seqs), T), PAD_IDX, dtype=torch.long)
    targets = torch.full((len(seqs), T), PAD_IDX, dtype=torch.long)
    for i, s in enumerate(seqs):
        inputs[i, : len(s) - 1] = s[:-1]
        targets[i, : len(s) - 1] = s[1:]
    return inputs, targets


@dataclass
class DataPosition:
    """Where training is in the data: the epoch and the number of batches already taken in it."""

    epoch: int = 0
    batch: int = 0


class BatchSampler:
    """Deterministic epoch permutations (seeded by ``seed`` and the epoch), fixed global batches.

    The order depends only on (seed, epoch), so a run resumed at a :class:`DataPosition` sees exactly the
    batches an uninterrupted run would. With ``world_size`` > 1, rank r takes items r, r+W, ... of each
    global batch (the union over ranks is the single-process batch). The last incomplete batch of an
    epoch is dropped so every step has the same global batch size.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if n_items < batch_size:
            raise ValueError(f"{n_items} training sequences are fewer than the batch size {batch_size}")
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the world size {world_size}")
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.rank, self.world_size = rank, world_size

    @property
    def batches_per_epoch(self) -> int:
        return self.n_items // self.batch_size

    def order(self, epoch: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n_items, generator=g)

    def iterate(self, position: DataPosition) -> Iterator[tuple[list[int], DataPosition]]:
        """Yield (this rank's item indices, the position *after* this batch) forever from ``position``."""
        epoch, b = position.epoch, position.batch
        while True:
            perm = self.order(epoch)
            while b < self.batches_per_epoch:
                idx = perm[b * self.batch_size : (b + 1) * self.batch_size][self.rank :: self.world_size]
                b += 1
                yield idx.tolist(), DataPosition(epoch, b)
            epoch, b = epoch + 1, 0

"""A corpus packed into one int16 file, read as a sequence of clips without holding it in memory.

Pretraining on tens of hours (spkit-base: about 50 h, 5.8 GB as int16, 11.5 GB as float32) cannot keep
every clip in memory on a 24 GB machine. :func:`pack_utterances` reads each clip once (16 kHz mono),
skips and reports clips that cannot be read, and writes ``NAME.int16`` (all samples, clip after clip)
beside ``NAME.json`` (uids, offsets, lengths, skipped clips). :class:`PackedAudio` memory-maps the
samples: ``packed[i]`` is clip ``i`` as a float32 tensor ``(samples,)``, read from disk on demand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spkit.audio import AudioError
from spkit.data.base import DataError, Utterance
from spkit.data.corpus import load_utterance
from spkit.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)

FORMAT = "spkit.packed_audio"
VERSION = 1


class PackedAudio(Sequence):
    """Clips of a packed corpus: ``len(p)`` clips, ``p[i]`` -> float32 tensor ``(samples,)`` at 16 kHz.

    ``lengths`` (samples per clip) and ``uids`` come from the index, without touching the audio.
    """

    def __init__(self, samples: np.ndarray, offsets: np.ndarray, uids: list[str], source: str = "<packed>"):
        self.samples = samples
        self.offsets = offsets
        self.uids = uids
        self.source = source
        self.lengths = np.diff(offsets)

    @classmethod
    def open(cls, path: str | os.PathLike) -> PackedAudio:
        """Open ``path`` (``NAME.json``, with ``NAME.int16`` beside it)."""
        path = Path(path)
        index = read_json(path)
        if index.get("format") != FORMAT:
            raise DataError(f"{path}: not a packed-audio index (format {index.get('format')!r})")
        data = path.with_suffix(".int16")
        n = int(index["offsets"][-1])
        if not data.is_file() or data.stat().st_size != 2 * n:
            raise DataError(f"{data}: missing or not {2 * n} bytes; pack the corpus again")
        samples = np.memmap(data, dtype=np.int16, mode="r", shape=(n,)) if n else np.zeros(0, np.int16)
        return cls(samples, np.asarray(index["offsets"], np.int64), list(index["uids"]), str(path))

    def __len__(self) -> int:
        return len(self.uids)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return torch.from_numpy(np.asarray(self.samples[a:b], dtype=np.float32) / 32768.0)

    @property
    def seconds(self) -> float:
        return float(self.offsets[-1]) / 16_000


def pack_utterances(
    utts: Sequence[Utterance], path: str | os.PathLike, progress: bool = True, min_samples: int = 400
) -> PackedAudio:
    """Pack ``utts`` into ``path`` (``NAME.json`` + ``NAME.int16``) and open it; reuse a finished pack.

    A clip that cannot be read (:class:`~spkit.audio.AudioError`) or is shorter than ``min_samples`` is
    skipped with a warning and listed under ``skipped`` in the index; the others are packed. The data
    file is written under a temporary name and the index last, so a killed run leaves no half pack.
    """
    path = Path(path)
    uids = [u.uid for u in utts]
    if path.is_file():
        index = read_json(path)
        if index.get("requested") == uids:
            return PackedAudio.open(path)
        log.info("%s: packed for other clips; packing again", path)
    data = path.with_suffix(".int16")
    offsets, kept, skipped = [0], [], []
    with atomic_path(data) as tmp, open(tmp, "wb") as f:
        for u in tqdm(utts, desc=f"packing {path.stem}", unit="clip", disable=not progress):
            try:
                w = load_utterance(u)
            except (AudioError, OSError) as e:
                skipped.append({"uid": u.uid, "path": str(u.path), "error": str(e)})
                log.warning("skipping %s: %s", u.path, e)
                continue
            if w.numel() < min_samples:
                skipped.append(
                    {"uid": u.uid, "path": str(u.path), "error": f"shorter than {min_samples} samples"}
                )
                log.warning("skipping %s: shorter than %d samples", u.path, min_samples)
                continue
            pcm = np.clip(np.round(w.numpy() * 32768.0), -32768, 32767).astype(np.int16)
            f.write(pcm.tobytes())
            offsets.append(offsets[-1] + pcm.size)
            kept.append(u.uid)
    if not kept:
        raise DataError(f"{path}: none of the {len(utts)} clips could be read (first: {skipped[:1]})")
    write_json(
        path,
        {
            "format": FORMAT,
            "version": VERSION,
            "sample_rate": 16_000,
            "uids": kept,
            "offsets": offsets,
            "skipped": skipped,
            "requested": uids,
            "seconds": round(offsets[-1] / 16_000, 2),
        },
        indent=None,
    )
    if skipped:
        log.warning("%s: %d of %d clips skipped (listed in the index)", path, len(skipped), len(utts))
    return PackedAudio.open(path)

"""What a unit sounds like (notebook 04): the longest runs of frames assigned to a unit in training clips
(``units/<corpus>/train.txt``, one unit per 20 ms frame), cut from the 16 kHz audio and concatenated with
short silences between them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spkit.analysis.verbalizer import AnalysisError
from spkit.audio import SAMPLE_RATE, load_audio
from spkit.features.base import HOP, num_frames

SAMPLES_PER_FRAME = HOP  # HuBERT hop at 16 kHz: one unit per 20 ms


def unit_segments(frame_units: Mapping[str, Sequence[int]], unit: int,
                  min_frames: int = 1) -> list[tuple[str, int, int]]:
    """Runs of frames assigned to ``unit``: ``(uid, start frame, end frame)``, longest first (ties: uid,
    start). ``frame_units``: ``{uid: per-frame units}`` as in ``units/<corpus>/<split>.txt``."""
    runs = []
    for uid, seq in frame_units.items():
        arr = np.asarray(seq, dtype=np.int64)
        if arr.size == 0:
            continue
        hit = np.concatenate([[False], arr == unit, [False]])
        edges = np.flatnonzero(hit[1:] != hit[:-1])
        for s, e in zip(edges[::2], edges[1::2]):
            if e - s >= min_frames:
                runs.append((uid, int(s), int(e)))
    runs.sort(key=lambda r: (-(r[2] - r[1]), r[0], r[1]))
    return runs


def unit_audio(segments: Sequence[tuple[str, int, int]], paths: Mapping[str, str | os.PathLike],
               n_frames: Mapping[str, int] | None = None, max_seconds: float = 1.0, gap_s: float = 0.04,
               fade_s: float = 0.004, max_segments: int = 25) -> np.ndarray:
    """Concatenate the audio of ``segments`` (frames of 20 ms, 320 samples at 16 kHz) into one clip.

    Each cut gets a short linear fade in and out (no clicks) and ``gap_s`` of silence after it; cutting
    stops at ``max_seconds`` or ``max_segments``. Returns a float32 (samples,) array at 16 kHz (empty
    when ``segments`` is). ``paths``: uid -> audio file (each is read once). ``n_frames``: uid -> the
    record's frame count; a clip whose file holds another number of frames (a window cut from a longer
    file, e.g. Speech Commands' ``_silence_``, whose offset the unit record does not keep) is skipped.
    """
    cache: dict[str, np.ndarray] = {}
    out: list[np.ndarray] = []
    total, budget = 0, int(max_seconds * SAMPLE_RATE)
    gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
    nfade = max(1, int(fade_s * SAMPLE_RATE))
    for uid, s, e in segments[:max_segments]:
        if total >= budget:
            break
        if uid not in paths:
            raise AnalysisError(f"unit_audio: no audio path for clip {uid!r}")
        if uid not in cache:
            cache[uid] = np.asarray(load_audio(paths[uid], SAMPLE_RATE), dtype=np.float32)
        if n_frames and uid in n_frames and abs(num_frames(cache[uid].size) - n_frames[uid]) > 1:
            continue
        cut = cache[uid][s * SAMPLES_PER_FRAME:e * SAMPLES_PER_FRAME].copy()
        if cut.size == 0:
            continue
        cut = cut[:budget - total]
        n = min(nfade, cut.size // 2)
        if n:
            ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
            cut[:n] *= ramp
            cut[-n:] *= ramp[::-1]
        out += [cut, gap]
        total += cut.size + gap.size
    return np.concatenate(out)[:budget] if out else np.zeros(0, dtype=np.float32)


def record_paths(records: Sequence[Mapping[str, Any]],
                 where: str | os.PathLike = "") -> tuple[dict[str, str], dict[str, int]]:
    """``({uid: audio path}, {uid: n_frames})`` of unit records (``<split>.jsonl``); :class:`AnalysisError`
    naming ``where`` for a record without a path."""
    paths, frames = {}, {}
    for r in records:
        if not r.get("path"):
            raise AnalysisError(f"{where}: record {r.get('uid')!r} has no audio path")
        paths[str(r["uid"])] = str(r["path"])
        if "n_frames" in r:
            frames[str(r["uid"])] = int(r["n_frames"])
    return paths, frames

"""Word and phone timings of spkit's synthesized corpora, and per-frame labels made from them.

``spkit synth`` writes its corpora in a real data set's native layout plus two files:

* ``<root>/spkit/alignments.jsonl``: one JSON object a line, one line a clip::

      {"path": "yes/0a1b2c3d_nohash_0.wav", "text": "yes", "speaker": "0a1b2c3d", "split": "train",
       "words": [["yes", 0.12, 0.55]], "phones": [["y", 0.12, 0.2], ["eh", 0.2, 0.41], ...]}

  ``path`` is relative to ``<root>``; times are seconds from the start of the clip.
* ``<root>/spkit/corpus.json``: a description of the corpus (read by :func:`read_corpus_info`).

Unit-quality metrics (phone purity, PNMI) need one label per unit frame: :func:`frame_labels`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spkit.data.base import DataError, Utterance

ALIGNMENTS_FILE = Path("spkit") / "alignments.jsonl"
CORPUS_FILE = Path("spkit") / "corpus.json"
TIERS = ("words", "phones")
SILENCE = "sil"


def _check_tier(intervals: Any, where: str) -> list[list[Any]]:
    """Validate ``[[label, start_s, end_s], ...]``; return it with float times."""
    if not isinstance(intervals, list):
        raise DataError(f"{where}: expected a list of [label, start_s, end_s], "
                        f"got {type(intervals).__name__}")
    out: list[list[Any]] = []
    for i, item in enumerate(intervals):
        if not (isinstance(item, (list, tuple)) and len(item) == 3):
            raise DataError(f"{where}: interval {i} is {item!r}; expected [label, start_s, end_s]")
        label, start, end = item
        try:
            start, end = float(start), float(end)
        except (TypeError, ValueError):
            raise DataError(f"{where}: interval {i} {item!r} has non-numeric times") from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            raise DataError(f"{where}: interval {i} {item!r} needs 0 <= start_s <= end_s")
        out.append([str(label), start, end])
    return out


def find_alignments(*roots: str | os.PathLike) -> Path | None:
    """The first ``<root>/spkit/alignments.jsonl`` that exists among ``roots``, or None."""
    for root in roots:
        candidate = Path(root) / ALIGNMENTS_FILE
        if candidate.is_file():
            return candidate
    return None


def load_alignments(root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read ``<root>/spkit/alignments.jsonl`` into ``{relative audio path (POSIX): record}``.

    Each record keeps ``text``, ``speaker``, ``split`` and the ``words``/``phones`` tiers as
    ``[[label, start_s, end_s], ...]``. Raises :class:`DataError` naming the file and line for a
    missing file, bad JSON, a missing ``path``, malformed intervals or a path listed twice.
    """
    path = Path(root) / ALIGNMENTS_FILE
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected spkit's alignments (one JSON object a line)")
    records: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e})") from e
            if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
                raise DataError(f"{where}: expected an object with a string 'path' field")
            rel = Path(rec["path"]).as_posix()
            if rel in records:
                raise DataError(f"{where}: {rel!r} is listed twice")
            for tier in TIERS:
                if tier in rec:
                    rec[tier] = _check_tier(rec[tier], f"{where} ({tier})")
            records[rel] = rec
    return records


def read_corpus_info(root: str | os.PathLike) -> dict[str, Any] | None:
    """``<root>/spkit/corpus.json`` as a dict, or None when the corpus is not one spkit wrote."""
    path = Path(root) / CORPUS_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(info, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info


def _relative(path: Path, base: Path) -> str | None:
    """``path`` relative to ``base`` (POSIX), or None when it lies outside."""
    try:  # loaders build paths from the root they were given: no file-system calls needed
        return path.relative_to(base).as_posix()
    except ValueError:
        pass
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return None


def attach_alignments(splits: Mapping[str, Sequence[Utterance]],
                      *roots: str | os.PathLike) -> dict[str, list[Utterance]]:
    """Copy of ``splits`` with alignments attached, when one of ``roots`` has ``spkit/alignments.jsonl``.

    A clip found in the file gets ``meta["alignment"]`` (the record: ``words``, ``phones``, ``text``...)
    and ``meta["alignments_file"]``; its ``text`` is filled from the record when the layout gave none.
    Clips cut from a longer file (``meta["offset_s"]``, e.g. Speech Commands silence) are left as
    they are, since the file's timings do not describe the window. Without such a file, returns
    the splits unchanged.
    """
    file = find_alignments(*roots)
    if file is None:
        return {k: list(v) for k, v in splits.items()}
    base = file.parent.parent
    records = load_alignments(base)
    out: dict[str, list[Utterance]] = {}
    for split, utts in splits.items():
        new: list[Utterance] = []
        for u in utts:
            rec = None
            if "offset_s" not in u.meta:
                rec = records.get(_relative(u.path, base))
            if rec is None:
                new.append(u)
                continue
            meta = {**u.meta, "alignment": rec, "alignments_file": str(file)}
            text = u.text if u.text is not None else rec.get("text")
            new.append(dataclasses.replace(u, text=text, meta=meta))
        out[split] = new
    return out


def frame_labels(alignment: Mapping[str, Any] | Sequence[Sequence[Any]], n_frames: int,
                 frame_rate: float = 50.0, tier: str = "phones", silence: str = SILENCE) -> list[str]:
    """One label per frame: the interval of ``tier`` that holds the frame's centre, else ``silence``.

    Args:
        alignment: a record from :func:`load_alignments` (or ``utt.meta["alignment"]``), or the
            interval list ``[[label, start_s, end_s], ...]`` itself.
        n_frames: how many frames the clip's units have (HuBERT at 16 kHz:
            ``floor((samples - 400) / 320) + 1``).
        frame_rate: frames per second (50 for HuBERT/GSLM: one frame every 20 ms).
        tier: ``phones`` or ``words`` when ``alignment`` is a record.
        silence: the label for frames outside every interval.

    Returns:
        ``n_frames`` strings. Frame ``i`` is centred at ``(i + 0.5) / frame_rate`` seconds; an
        interval ``[start, end)`` holds it when ``start <= centre < end`` (the first one listed wins
        where intervals overlap).
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
    if isinstance(alignment, Mapping):
        if tier not in alignment:
            raise DataError(f"alignment of {alignment.get('path', '<record>')!r} has no {tier!r} tier "
                            f"(has {sorted(k for k in alignment if k in TIERS)})")
        intervals = _check_tier(alignment[tier], f"alignment of {alignment.get('path', '<record>')!r}")
    else:
        intervals = _check_tier(list(alignment), "alignment")
    labels = [silence] * n_frames
    filled = [False] * n_frames
    for label, start, end in intervals:
        # Candidate frames around [start, end), then the exact test on the centre (i + 0.5) / rate,
        # so that a boundary equal to a centre is decided the same way whatever the rounding.
        first = max(0, math.floor(start * frame_rate) - 1)
        last = min(n_frames, math.ceil(end * frame_rate) + 1)
        for i in range(first, last):
            centre = (i + 0.5) / frame_rate
            if start <= centre < end and not filled[i]:
                labels[i] = label
                filled[i] = True
    return labels

"""The kit's unit files: GSLM's ``name|u1 u2 ...`` lines, the ``.jsonl`` records beside them, and the names of
a quantization job's outputs (see :mod:`spkit.units.quantize` for what each file holds).

Every kind of unit model writes them the same way (k-means units:
:func:`spkit.units.quantize.quantize_corpus`; the oracle topline's phone units:
:func:`spkit.units.oracle.quantize_oracle`), so this module sits below both and knows nothing of encoders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spkit.data.base import DataError, Utterance
from spkit.units.encoded import dedup


def check_name(name: str, where: str = "") -> str:
    """A name usable on a ``name|units`` line: non-empty, no ``|``, no line break."""
    if not name or "|" in name or "\n" in name or "\r" in name:
        raise ValueError(f"{where}{name!r} cannot be written as a unit-file name (empty, or holds '|' or "
                         "a line break)")
    return name


def format_line(name: str, units: Sequence[int]) -> str:
    """One GSLM unit line, ``name|u1 u2 ...`` with its newline."""
    return f"{check_name(name)}|{' '.join(str(int(u)) for u in units)}\n"


def read_units(path: str | os.PathLike) -> dict[str, list[int]]:
    """Read a GSLM unit file (``name|u1 u2 ...`` lines) into ``{name: units}``, in file order.

    The name is everything before the last ``|``. Errors name the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such unit file")
    out: dict[str, list[int]] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            name, sep, body = line.rpartition("|")
            if not sep or not name:
                raise ValueError(f"{path}:{lineno}: expected 'name|u1 u2 ...', got {line[:80]!r}")
            try:
                units = [int(t) for t in body.split()]
            except ValueError:
                raise ValueError(f"{path}:{lineno}: units must be integers, got {body[:80]!r}") from None
            if name in out:
                raise ValueError(f"{path}:{lineno}: duplicate name {name!r}")
            out[name] = units
    return out


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a ``<name>.jsonl`` unit-record file (one JSON object per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such unit-record file")
    out = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from e
    return out


def output_paths(out_dir: str | os.PathLike, name: str = "units",
                 shard: tuple[int, int] = (0, 1)) -> dict[str, Path]:
    """The files a (shard of a) quantization job writes: keys ``units``, ``records``, ``errors``, ``meta``."""
    out_dir = Path(out_dir)
    stem = name if shard[1] == 1 else f"{name}.shard-{shard[0]}-of-{shard[1]}"
    return {"units": out_dir / f"{stem}.txt", "records": out_dir / f"{stem}.jsonl",
            "errors": out_dir / f"{stem}.errors.jsonl", "meta": out_dir / f"{stem}.meta.json"}


def check_utterances(utterances: Sequence[Utterance], out_dir: Path) -> list[Utterance]:
    """``utterances`` sorted by uid; refuses none, a uid that cannot be a unit-file name, or a uid twice."""
    if not utterances:
        raise DataError(f"no utterances to quantize into {out_dir} (empty corpus or split)")
    seen: dict[str, Path] = {}
    for u in utterances:
        check_name(u.uid, where=f"{u.path}: uid ")
        if u.uid in seen:
            raise DataError(f"duplicate uid {u.uid!r}: {seen[u.uid]} and {u.path}")
        seen[u.uid] = Path(u.path)
    return sorted(utterances, key=lambda u: u.uid)


def unit_record(u: Utterance, frame_units: Sequence[int]) -> dict[str, Any]:
    """The ``<name>.jsonl`` record of one clip: its metadata, deduplicated ``units``, ``durations`` (frames
    per unit) and ``n_frames`` (what every kind of unit file holds, k-means or oracle)."""
    deduped, durations = dedup(frame_units)
    record = {"uid": u.uid, "path": str(u.path), "split": u.split, "speaker": u.speaker,
              "label": u.label, "text": u.text, "units": deduped, "durations": durations,
              "n_frames": len(frame_units)}
    if "offset_s" in u.meta:  # a window of a longer file (Speech Commands' _silence_)
        record["offset_s"] = u.meta["offset_s"]
        record["duration_s"] = u.meta.get("duration_s")
    return record


def json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)

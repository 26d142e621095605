"""Small helpers shared by the corpus loaders: split names, uids, path checks, line reading.

Every check raises :class:`spkit.data.base.DataError` whose message starts with the offending
path, then says what was expected there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from spkit.data.base import DataError, Utterance

SPLITS: tuple[str, ...] = ("train", "valid", "test")
"""The split names every loader returns, in this order."""

_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "valid": "valid", "validation": "valid", "dev": "valid", "val": "valid",
    "test": "test", "testing": "test", "eval": "test",
}

_UNSAFE_UID = re.compile(r"[\s|]+")


def normalize_split(name: str, where: str | os.PathLike | None = None) -> str:
    """Map a split name or alias (``dev``, ``validation``...) onto ``train``/``valid``/``test``."""
    key = str(name).strip().lower()
    if key not in _SPLIT_ALIASES:
        prefix = f"{where}: " if where is not None else ""
        raise DataError(f"{prefix}unknown split {name!r}; expected one of {list(SPLITS)} "
                        f"(or an alias: {sorted(set(_SPLIT_ALIASES) - set(SPLITS))})")
    return _SPLIT_ALIASES[key]


def wanted_splits(split: str | Sequence[str] | None) -> tuple[str, ...]:
    """The normalized splits a caller asked for (``None`` = all three), in canonical order."""
    if split is None:
        return SPLITS
    names = [split] if isinstance(split, str) else list(split)
    chosen = {normalize_split(n) for n in names}
    return tuple(s for s in SPLITS if s in chosen)


def make_uid(relpath: str | os.PathLike) -> str:
    """A corpus-unique id from a path relative to the corpus root: POSIX separators, no suffix.

    Whitespace and ``|`` are replaced by ``_`` because unit files are written as ``uid|u1 u2 ...``.
    """
    p = Path(relpath)
    stem = p.with_suffix("").as_posix() if p.suffix else p.as_posix()
    return _UNSAFE_UID.sub("_", stem)


def check_unique_uids(utts: Iterable[Utterance], where: str | os.PathLike) -> None:
    """Raise if two utterances share a uid (e.g. ``a b.wav`` and ``a_b.wav`` after sanitising)."""
    seen: dict[str, Path] = {}
    for u in utts:
        if u.uid in seen:
            raise DataError(f"{where}: two clips map onto the same uid {u.uid!r}: "
                            f"{seen[u.uid]} and {u.path}")
        seen[u.uid] = u.path


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise naming it and what it should hold."""
    path = Path(path)
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "no such folder"
        raise DataError(f"{path}: {state}; expected {what}")
    return path


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` if it is a file, else raise naming it and what it should be."""
    path = Path(path)
    if not path.is_file():
        state = "is not a file" if path.exists() else "no such file"
        raise DataError(f"{path}: {state}; expected {what}")
    return path


def read_lines(path: str | os.PathLike, what: str) -> list[str]:
    """The lines of a UTF-8 text file without line ends (blank lines kept, so numbers stay right)."""
    path = require_file(path, what)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); expected {what}") from e


def check_files_exist(utts: Iterable[Utterance], where: str | os.PathLike) -> None:
    """Raise naming the first listed audio file that does not exist (and how many are missing)."""
    missing = [u.path for u in utts if not u.path.is_file()]
    if missing:
        raise DataError(f"{where}: {len(missing)} listed audio file(s) do not exist, "
                        f"first: {missing[0]}")


def empty_splits(splits: Sequence[str]) -> dict[str, list[Utterance]]:
    """``{split: []}`` for each requested split, in canonical order."""
    return {s: [] for s in splits}

"""Fluent Speech Commands (intent classification) in its native layout.

Layout::

    <root>/data/train_data.csv, valid_data.csv, test_data.csv
    <root>/wavs/speakers/<speakerId>/<name>.wav

Each CSV has the header ``,path,speakerId,transcription,action,object,location`` (an unnamed
index column first); ``path`` is relative to ``<root>``. ``<root>`` may also be the folder that
holds ``fluent_speech_commands_dataset/``.

The label of a clip is the dict ``{"action", "object", "location"}``; ``meta["intent"]`` holds the
flattened string ``action|object|location`` (31 distinct intents in the real data set).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from spkit.data.base import DataError, Utterance
from spkit.data.common import check_files_exist, check_unique_uids, make_uid, require_dir, wanted_splits

SLOTS: tuple[str, ...] = ("action", "object", "location")
COLUMNS: tuple[str, ...] = ("path", "speakerId", "transcription", *SLOTS)
CSV_NAMES = {"train": "train_data.csv", "valid": "valid_data.csv", "test": "test_data.csv"}
PARENT_NAME = "fluent_speech_commands_dataset"


def intent_string(label: dict[str, str]) -> str:
    """``{"action": a, "object": o, "location": l}`` -> ``"a|o|l"``."""
    return "|".join(label[s] for s in SLOTS)


def resolve_root(root: str | os.PathLike) -> Path:
    """The folder that holds ``data/`` (``root`` itself or ``root/fluent_speech_commands_dataset``)."""
    root = Path(root)
    if not (root / "data").is_dir() and (root / PARENT_NAME / "data").is_dir():
        return root / PARENT_NAME
    return root


def read_split_csv(root: Path, split: str) -> list[Utterance]:
    """Parse ``<root>/data/<split>_data.csv`` into Utterances (no file checks)."""
    path = root / "data" / CSV_NAMES[split]
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected the Fluent Speech Commands {split} CSV "
                        f"(header ',{','.join(COLUMNS)}')")
    utts = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; header is {header}, expected "
                            f"',{','.join(COLUMNS)}'")
        for row in reader:
            line = reader.line_num
            values = {c: (row.get(c) or "").strip() for c in COLUMNS}
            if row.get(None):  # csv puts cells beyond the header under the key None
                raise DataError(f"{path}:{line}: more cells than header columns")
            empty = [c for c in ("path", "speakerId", *SLOTS) if not values[c]]
            if empty:
                raise DataError(f"{path}:{line}: empty {empty}")
            rel = values["path"]
            if Path(rel).is_absolute():
                raise DataError(f"{path}:{line}: path {rel!r} is absolute; expected a path relative "
                                f"to {root}")
            label = {s: values[s] for s in SLOTS}
            utts.append(Utterance(
                uid=make_uid(rel), path=root / rel, split=split, speaker=values["speakerId"],
                label=label, text=values["transcription"] or None,
                meta={"intent": intent_string(label), "relpath": Path(rel).as_posix()}))
    if not utts:
        raise DataError(f"{path}: no rows; expected one row per clip")
    return utts


def load_fluent(root: str | os.PathLike, split: str | Sequence[str] | None = None, *,
                check_files: bool = True) -> dict[str, list[Utterance]]:
    """List Fluent Speech Commands clips per split as ``{split: [Utterance, ...]}`` (CSV order).

    Args:
        root: the data set folder (holding ``data/`` and ``wavs/``) or its parent.
        split: a split or list of splits (None: train, valid, test).
        check_files: check that every listed wav exists (one ``stat`` a clip).

    Raises:
        DataError: no ``data/`` folder, a missing CSV, a missing column, an empty cell, an absolute
            path, a uid shared by two rows, or (``check_files``) a listed wav that does not exist.
    """
    root = require_dir(resolve_root(root), "the Fluent Speech Commands folder (data/*_data.csv, wavs/)")
    require_dir(root / "data", "Fluent Speech Commands' CSVs (train_data.csv, valid_data.csv, test_data.csv)")
    out: dict[str, list[Utterance]] = {}
    for s in wanted_splits(split):
        utts = read_split_csv(root, s)
        where = root / "data" / CSV_NAMES[s]
        check_unique_uids(utts, where)
        if check_files:
            check_files_exist(utts, where)
        out[s] = utts
    return out

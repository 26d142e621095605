"""Tell which native layout a folder holds, with an error that lists everything looked for."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from spkit.data.base import DataError
from spkit.data.fluent import CSV_NAMES
from spkit.data.fluent import resolve_root as fluent_root
from spkit.data.librispeech import PARENT_NAME, find_subsets
from spkit.data.snips import TRANSCRIPT_FILE as SNIPS_TRANSCRIPTS
from spkit.data.snips import resolve_root as snips_root
from spkit.data.speech_commands import LIST_FILES, NOISE_DIR, is_test_set_layout

KINDS: tuple[str, ...] = ("speech_commands", "fluent", "librispeech", "snips", "tsv")
LOOKED_FOR = (
    "speech_commands: validation_list.txt, testing_list.txt or _background_noise_/ "
    "(or _silence_/ + _unknown_/ for SUPERB's test folder)",
    "fluent: data/train_data.csv, data/valid_data.csv or data/test_data.csv "
    "(or the same in fluent_speech_commands_dataset/)",
    f"librispeech: subset folders such as train-clean-100, dev-clean, test-other (in the folder, "
    f"in {PARENT_NAME}/, or the folder is one)",
    f"snips: {SNIPS_TRANSCRIPTS} (Audio SNIPS as SUPERB reads it; in the folder or in SNIPS/)",
    "tsv: train.tsv, valid.tsv, dev.tsv or test.tsv (or the path is a .tsv file)",
)


@dataclass(frozen=True)
class Layout:
    """A detected corpus: its ``kind`` (a :data:`KINDS` entry) and the folder or file to load."""

    kind: str
    root: Path
    evidence: str


def detect_layout(root: str | os.PathLike) -> Layout:
    """Detect the layout under ``root``; raise :class:`DataError` listing what was looked for."""
    root = Path(root)
    if root.is_file():
        if root.suffix == ".tsv":
            return Layout("tsv", root, "a .tsv manifest file")
        raise DataError(f"{root}: a file that is not a .tsv manifest; expected a corpus folder "
                        "or a .tsv file")
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected a corpus folder")
    sc_marks = [n for n in (*LIST_FILES.values(), NOISE_DIR) if (root / n).exists()]
    if sc_marks:
        return Layout("speech_commands", root, f"found {sc_marks}")
    if is_test_set_layout(root):
        return Layout("speech_commands", root, "found _silence_/ or _unknown_/ (SUPERB test folder)")
    fsc = fluent_root(root)
    csvs = [n for n in CSV_NAMES.values() if (fsc / "data" / n).is_file()]
    if csvs:
        return Layout("fluent", fsc, f"found data/{csvs}")
    snips = snips_root(root)
    if (snips / SNIPS_TRANSCRIPTS).is_file():
        return Layout("snips", snips, f"found {SNIPS_TRANSCRIPTS}")
    subsets = find_subsets(root)
    if subsets:
        return Layout("librispeech", root, f"found subsets {[p.name for p in subsets]}")
    tsvs = [n for n in ("train.tsv", "valid.tsv", "dev.tsv", "test.tsv") if (root / n).is_file()]
    if tsvs:
        return Layout("tsv", root, f"found {tsvs}")
    raise DataError(f"{root}: no known corpus layout; looked for:\n  " + "\n  ".join(LOOKED_FOR))

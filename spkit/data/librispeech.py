"""LibriSpeech (ASR) in its native layout.

Layout::

    <LibriSpeech>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac
    <LibriSpeech>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   ('ID TRANSCRIPT' lines)

Subsets map onto splits: ``train-*`` -> train, ``dev-*`` -> valid, ``test-*`` -> test. ``root`` may
be the ``LibriSpeech/`` folder (all subsets found there), its parent, or one subset folder.
Transcripts are upper-case words as in the release; the label is None (ASR).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from spkit.data.base import DataError, Utterance
from spkit.data.common import check_unique_uids, read_lines, require_dir, wanted_splits

SUBSET_RE = re.compile(r"^(?P<kind>train|dev|test)-(?P<cond>clean|other)(-\d+)?$")
SUBSET_SPLIT = {"train": "train", "dev": "valid", "test": "test"}
PARENT_NAME = "LibriSpeech"
_ID_RE = re.compile(r"^(?P<speaker>\d+)-(?P<chapter>\d+)-(?P<n>\d+)$")


def subset_split(name: str) -> str | None:
    """``train-clean-100`` -> ``train``, ``dev-other`` -> ``valid``...; None for other names."""
    m = SUBSET_RE.match(name)
    return SUBSET_SPLIT[m.group("kind")] if m else None


def find_subsets(root: str | os.PathLike) -> list[Path]:
    """The subset folders under ``root`` (``LibriSpeech/``, its parent, or a subset folder itself)."""
    root = Path(root)
    if subset_split(root.name) is not None and root.is_dir():
        return [root]
    for base in (root, root / PARENT_NAME):
        if base.is_dir():
            found = sorted(p for p in base.iterdir() if p.is_dir() and subset_split(p.name))
            if found:
                return found
    return []


def read_chapter(chapter_dir: Path, subset: str, split: str, check_files: bool = True) -> list[Utterance]:
    """The clips of one ``<speaker>/<chapter>`` folder, from its ``.trans.txt`` (sorted by id).

    Raises naming the transcript file when it is missing or malformed, when a line's id does not
    belong to this speaker/chapter, when a line names a flac that is not there, or when a flac has
    no transcript line.
    """
    speaker, chapter = chapter_dir.parent.name, chapter_dir.name
    trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
    lines = read_lines(trans, f"LibriSpeech transcripts ('{speaker}-{chapter}-NNNN TRANSCRIPT' lines)")
    flacs = {p.stem for p in chapter_dir.glob("*.flac")}
    utts: list[Utterance] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        uid, _, text = line.strip().partition(" ")
        m = _ID_RE.match(uid)
        if m is None or m.group("speaker") != speaker or m.group("chapter") != chapter:
            raise DataError(f"{trans}:{n}: id {uid!r} is not '{speaker}-{chapter}-NNNN'")
        if uid in seen:
            raise DataError(f"{trans}:{n}: id {uid!r} is listed twice")
        seen.add(uid)
        if check_files and uid not in flacs:
            raise DataError(f"{trans}:{n}: {uid!r} has no audio file {chapter_dir / (uid + '.flac')}")
        utts.append(Utterance(uid=uid, path=chapter_dir / f"{uid}.flac", split=split, speaker=speaker,
                              label=None, text=text.strip(),
                              meta={"chapter": chapter, "subset": subset}))
    orphans = sorted(flacs - seen)
    if check_files and orphans:
        raise DataError(f"{trans}: no transcript line for {len(orphans)} flac file(s), "
                        f"first: {chapter_dir / (orphans[0] + '.flac')}")
    return sorted(utts, key=lambda u: u.uid)


def load_librispeech(root: str | os.PathLike, split: str | Sequence[str] | None = None, *,
                     subsets: Sequence[str] | None = None,
                     check_files: bool = True) -> dict[str, list[Utterance]]:
    """List LibriSpeech clips per split as ``{split: [Utterance, ...]}`` (sorted by id).

    Args:
        root: ``LibriSpeech/``, its parent, or one subset folder such as ``dev-clean``.
        split: a split or list of splits (None: every split some found subset maps onto).
        subsets: only these subset folders (e.g. ``["train-clean-100", "dev-clean", "test-clean"]``);
            None takes every subset found. Several subsets of one split are concatenated.
        check_files: match transcript lines and flac files both ways (one folder listing a chapter).

    Raises:
        DataError: no subset folder, a requested subset or split that is not there, a speaker
            folder without chapters, or any transcript problem (see :func:`read_chapter`).
    """
    root = Path(root)
    require_dir(root, "LibriSpeech (LibriSpeech/<subset>/<speaker>/<chapter>/*.flac + *.trans.txt)")
    found = find_subsets(root)
    if not found:
        raise DataError(f"{root}: no LibriSpeech subset folder; looked for train-*/dev-*/test-* "
                        f"folders (e.g. dev-clean) in {root} and {root / PARENT_NAME}")
    if subsets is not None:
        by_name = {p.name: p for p in found}
        unknown = [s for s in subsets if s not in by_name]
        if unknown:
            raise DataError(f"{found[0].parent}: subset folder(s) {unknown} not found; "
                            f"found {sorted(by_name)}")
        found = [by_name[s] for s in subsets]
    wanted = wanted_splits(split)
    out: dict[str, list[Utterance]] = {}
    for subset_dir in found:
        s = subset_split(subset_dir.name)
        if s not in wanted:
            continue
        speakers = sorted(p for p in subset_dir.iterdir() if p.is_dir())
        if not speakers:
            raise DataError(f"{subset_dir}: no speaker folders; expected <speaker>/<chapter>/")
        for spk in speakers:
            chapters = sorted(p for p in spk.iterdir() if p.is_dir())
            if not chapters:
                raise DataError(f"{spk}: no chapter folders; expected <chapter>/*.flac + *.trans.txt")
            for ch in chapters:
                out.setdefault(s, []).extend(read_chapter(ch, subset_dir.name, s, check_files))
    if split is not None:
        absent = [s for s in wanted if s not in out]
        if absent:
            raise DataError(f"{root}: no LibriSpeech subset for split(s) {absent}; found "
                            f"{[p.name for p in found]}")
    for utts in out.values():
        check_unique_uids(utts, root)
    return {s: out[s] for s in wanted if s in out}

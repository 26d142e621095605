"""Generic TSV manifests: spkit's own (``path label speaker [text] [split]``) and fairseq's.

spkit TSV (spkit's ``lid`` corpus is ``<root>/{train,valid,test}.tsv`` in this format)::

    path<TAB>label<TAB>speaker[<TAB>text][<TAB>split][<TAB>anything else -> meta]
    de/spk01_0001.wav<TAB>de<TAB>spk01<TAB>guten Tag<TAB>train

Paths are all relative to the manifest's folder, or all absolute (a mix is an error: it is almost
always a manifest assembled from two places by mistake). Empty ``label``/``text`` cells become None.

fairseq / wav2vec2 / HuBERT manifest (``<split>.tsv``): the first line is the audio root folder,
then ``relpath<TAB>n_samples`` lines. A relative root is taken relative to the manifest's folder.
When a ``<split>.wrd`` file (one transcript a line, fairseq's ASR convention) sits beside it, its
lines become the clips' ``text``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from spkit.data.base import DataError, Utterance
from spkit.data.common import (
    SPLITS,
    check_files_exist,
    check_unique_uids,
    make_uid,
    normalize_split,
    read_lines,
    require_dir,
    wanted_splits,
)

REQUIRED = ("path", "label", "speaker")
OPTIONAL = ("text", "split")
_LIBRI_ID = re.compile(r"^(?P<speaker>\d+)-\d+-\d+$")
_SC_NAME = re.compile(r"^(?P<speaker>.+?)_nohash_\d+$")


def manifest_style(path: str | os.PathLike) -> str:
    """``spkit`` (a tab-separated header with ``path``) or ``fairseq`` (a root-folder first line)."""
    path = Path(path)
    lines = read_lines(path, "a TSV manifest")
    if not lines or not lines[0].strip():
        raise DataError(f"{path}: empty first line; expected a header 'path<TAB>label<TAB>speaker' "
                        "or a fairseq root folder")
    first = lines[0]
    if "\t" in first:
        if "path" in first.split("\t"):
            return "spkit"
        raise DataError(f"{path}:1: header {first.split(chr(9))} has no 'path' column; expected "
                        f"'path<TAB>label<TAB>speaker' (spkit) or a root folder line (fairseq)")
    return "fairseq"


def _guess_speaker(rel: str) -> str:
    """Speaker from a LibriSpeech id or a Speech Commands name, else ``unknown``."""
    stem = Path(rel).stem
    for pattern in (_LIBRI_ID, _SC_NAME):
        m = pattern.match(stem)
        if m:
            return m.group("speaker")
    return "unknown"


def _split_from_name(path: Path) -> str | None:
    try:
        return normalize_split(path.stem)
    except DataError:
        return None


def read_spkit_tsv(path: str | os.PathLike, split: str | None = None) -> list[Utterance]:
    """Parse a spkit TSV. Each row's split: its ``split`` cell, else ``split``, else the file name.

    Raises naming the file (and line) for a missing column, a row with the wrong number of cells,
    an empty path/speaker, a relative/absolute mix, or a row with no split to be found.
    """
    path = Path(path)
    lines = read_lines(path, "a spkit TSV manifest")
    header = lines[0].split("\t") if lines else []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {missing}; header is {header}, expected "
                        f"'path<TAB>label<TAB>speaker' plus optional {list(OPTIONAL)}")
    if len(set(header)) != len(header):
        raise DataError(f"{path}:1: duplicate column names in {header}")
    default_split = normalize_split(split, path) if split is not None else _split_from_name(path)
    base = path.parent
    utts: list[Utterance] = []
    absolute: bool | None = None
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataError(f"{path}:{n}: {len(cells)} cells, header has {len(header)} ({header})")
        row = dict(zip(header, (c.strip() for c in cells)))
        if not row["path"] or not row["speaker"]:
            raise DataError(f"{path}:{n}: empty {'path' if not row['path'] else 'speaker'}")
        p = Path(row["path"])
        if absolute is None:
            absolute = p.is_absolute()
        elif p.is_absolute() != absolute:
            kinds = ("relative", "absolute")
            raise DataError(f"{path}:{n}: path {row['path']!r} is {kinds[p.is_absolute()]} but earlier "
                            f"rows are {kinds[absolute]}; use one kind")
        row_split = normalize_split(row["split"], f"{path}:{n}") if row.get("split") else default_split
        if split is not None and row_split != default_split:
            raise DataError(f"{path}:{n}: row is in split {row_split!r} but the manifest is read "
                            f"as {default_split!r}")
        if row_split is None:
            raise DataError(f"{path}:{n}: no split: add a 'split' column, name the file "
                            f"train/valid/test.tsv, or pass split=")
        full = p if p.is_absolute() else base / p
        try:
            rel = full.relative_to(base).as_posix()
        except ValueError:
            rel = p.as_posix().lstrip("/")
        meta = {k: v for k, v in row.items() if k not in (*REQUIRED, *OPTIONAL)}
        utts.append(Utterance(uid=make_uid(rel), path=full, split=row_split, speaker=row["speaker"],
                              label=row["label"] or None, text=row.get("text") or None,
                              meta={**meta, "manifest": str(path)}))
    return utts


def read_fairseq_manifest(path: str | os.PathLike, split: str | None = None) -> list[Utterance]:
    """Parse a fairseq manifest (root line, then ``relpath<TAB>n_samples``) and its ``.wrd`` if any.

    ``meta["n_samples"]`` holds the listed length. The split is ``split`` or the file name's.
    """
    path = Path(path)
    lines = read_lines(path, "a fairseq manifest (root folder line, then 'relpath<TAB>n_samples')")
    the_split = normalize_split(split, path) if split is not None else _split_from_name(path)
    if the_split is None:
        raise DataError(f"{path}: cannot tell the split from the file name; name it "
                        f"train/valid/test.tsv or pass split=")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = path.parent / root
    entries = [(n, line) for n, line in enumerate(lines[1:], start=2) if line.strip()]
    words_path = path.with_suffix(".wrd")
    texts: list[str | None] = [None] * len(entries)
    if words_path.is_file():
        wrd = read_lines(words_path, "fairseq transcripts (one line per manifest entry)")
        if len(wrd) != len(entries):
            raise DataError(f"{words_path}: {len(wrd)} lines, but {path} lists {len(entries)} clips")
        texts = [t.strip() or None for t in wrd]
    utts = []
    for (n, line), text in zip(entries, texts):
        cells = line.split("\t")
        if len(cells) != 2:
            raise DataError(f"{path}:{n}: expected 'relpath<TAB>n_samples', got {line!r}")
        rel, count = cells[0].strip(), cells[1].strip()
        if Path(rel).is_absolute():
            raise DataError(f"{path}:{n}: path {rel!r} is absolute; fairseq paths are relative to "
                            f"the root on line 1 ({root})")
        if not count.isdigit():
            raise DataError(f"{path}:{n}: n_samples {count!r} is not a non-negative integer")
        utts.append(Utterance(uid=make_uid(rel), path=root / rel, split=the_split,
                              speaker=_guess_speaker(rel), label=None, text=text,
                              meta={"n_samples": int(count), "manifest": str(path)}))
    return utts


def load_manifest(path: str | os.PathLike, split: str | None = None, *,
                  check_files: bool = True) -> list[Utterance]:
    """Read one manifest file of either style (see the module docstring)."""
    path = Path(path)
    if manifest_style(path) == "spkit":
        utts = read_spkit_tsv(path, split)
    else:
        utts = read_fairseq_manifest(path, split)
    if not utts:
        raise DataError(f"{path}: no clips listed")
    check_unique_uids(utts, path)
    if check_files:
        check_files_exist(utts, path)
    return utts


def load_tsv_corpus(root: str | os.PathLike, split: str | Sequence[str] | None = None, *,
                    check_files: bool = True) -> dict[str, list[Utterance]]:
    """``{split: [Utterance, ...]}`` from ``<root>/{train,valid,test}.tsv``, or from one TSV file.

    For a folder, each split is read from ``<split>.tsv`` (``dev.tsv`` also counts as ``valid``);
    with ``split=None`` every present one is read. For a single file, rows are grouped by their
    ``split`` cell (or the file name's split).
    """
    root = Path(root)
    wanted = wanted_splits(split)
    if root.is_file():
        out: dict[str, list[Utterance]] = {}
        for u in load_manifest(root, check_files=check_files):
            if u.split in wanted:
                out.setdefault(u.split, []).append(u)
        if split is not None and any(s not in out for s in wanted):
            raise DataError(f"{root}: no rows for split(s) {[s for s in wanted if s not in out]}")
        return {s: out[s] for s in SPLITS if s in out}
    require_dir(root, "a folder with train.tsv / valid.tsv / test.tsv manifests, or one .tsv file")
    files: dict[str, Path] = {}
    for s in wanted:
        names = [f"{s}.tsv"] + (["dev.tsv"] if s == "valid" else [])
        found = [root / n for n in names if (root / n).is_file()]
        if found:
            files[s] = found[0]
        elif split is not None:
            raise DataError(f"{root}: no {' or '.join(names)}; expected the {s} manifest")
    if not files:
        raise DataError(f"{root}: no manifest found; looked for {[f'{s}.tsv' for s in wanted]}")
    out = {s: load_manifest(f, split=s, check_files=check_files) for s, f in files.items()}
    every = [u for utts in out.values() for u in utts]
    check_unique_uids(every, root)
    return out

"""Google Speech Commands v0.01 / v0.02 in their native layout, for keyword spotting.

Layout (both versions)::

    <root>/<word>/<speaker>_nohash_<n>.wav      1 s, 16 kHz clips
    <root>/validation_list.txt                  'word/file.wav' lines -> valid
    <root>/testing_list.txt                     'word/file.wav' lines -> test (the rest: train)
    <root>/_background_noise_/*.wav             long noise recordings

v0.01 has 30 words, v0.02 35. Two tasks:

* ``kws12`` (SUPERB / SpeechPrompt): the ten words ``yes no up down left right on off stop go``,
  every other word -> ``_unknown_``, and ``_silence_`` clips cut as 1 s windows from the
  background noise. The windows are drawn with a seeded generator, so the same seed gives the same
  windows; by default each noise file is cut in time into train/valid/test regions (about
  80/10/10 %, see :func:`noise_region`), so no window of one split overlaps a window of another.
  A window is an :class:`Utterance` whose ``path`` is the noise file and whose ``meta`` holds
  ``offset_s``/``duration_s`` (also in samples); read it with :func:`load_segment` (or
  :func:`spkit.data.load_utterance`).
* ``full``: every word is its own class (30 or 35), no ``_silence_``/``_unknown_``.

SUPERB / SpeechPrompt train and validate on **class-balanced draws** (s3prl
``downstream/speech_commands``: a ``WeightedRandomSampler`` with weight ``N / count(class)`` per item and N
draws with replacement, the ``_silence_`` items being the noise files, each draw a random 1 s crop);
:func:`class_balanced_draws` draws the same way from any list of labelled items (here the ``_silence_``
items are this loader's seeded 1 s windows, so a draw picks a random crop among them).

SUPERB tests v0.01 on a separate folder (``speech_commands_test_set_v0.01``: ``<label>/<file>.wav``
with ``_silence_`` and ``_unknown_`` folders already there). Pass it as ``test_root``: the test split
then comes from it, and the clips of ``testing_list.txt`` are left out of every split. Passing that
folder itself as ``root`` also works (it returns only ``test``).
"""

from __future__ import annotations

import math
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
import torch

from spkit.audio import AudioError, resample, to_mono, validate
from spkit.data.base import DataError, Utterance
from spkit.data.common import (
    SPLITS,
    check_unique_uids,
    make_uid,
    read_lines,
    require_dir,
    require_file,
    wanted_splits,
)

T = TypeVar("T")

KWS_WORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
KWS12_LABELS: tuple[str, ...] = (*KWS_WORDS, UNKNOWN, SILENCE)
"""The SUPERB / SpeechPrompt keyword-spotting classes, in SUPERB's order."""

V001_WORDS: tuple[str, ...] = (
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy", "house", "left",
    "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop", "three",
    "tree", "two", "up", "wow", "yes", "zero",
)
V002_WORDS: tuple[str, ...] = tuple(sorted((*V001_WORDS, "backward", "follow", "forward", "learn", "visual")))
NOISE_DIR = "_background_noise_"
LIST_FILES = {"valid": "validation_list.txt", "test": "testing_list.txt"}
TASKS = ("kws12", "full")
HASH_DIVIDER = "_nohash_"
TEST_SET_PREFIX = "test_set/"
_CLIP_NAME = re.compile(r"^(?P<speaker>[^/]+?)_nohash_(?P<n>\d+)\.wav$")


def detect_version(root: str | os.PathLike) -> str:
    """``v0.02`` when any v0.02-only word folder exists under ``root``, else ``v0.01``."""
    root = Path(root)
    extra = set(V002_WORDS) - set(V001_WORDS)
    return "v0.02" if any((root / w).is_dir() for w in extra) else "v0.01"


def words_for(version: str) -> tuple[str, ...]:
    """The vocabulary of a Speech Commands release (sorted)."""
    if version not in ("v0.01", "v0.02"):
        raise ValueError(f"unknown Speech Commands version {version!r}; expected 'v0.01' or 'v0.02'")
    return V001_WORDS if version == "v0.01" else V002_WORDS


def kws12_label(word: str) -> str:
    """The 12-class label of a Speech Commands word folder name."""
    if word in KWS_WORDS or word in (UNKNOWN, SILENCE):
        return word
    return UNKNOWN


def is_test_set_layout(root: str | os.PathLike) -> bool:
    """True for SUPERB's separate test folder: ``_silence_``/``_unknown_`` folders and no list files."""
    root = Path(root)
    has_class_dirs = (root / SILENCE).is_dir() or (root / UNKNOWN).is_dir()
    return has_class_dirs and not any((root / f).exists() for f in LIST_FILES.values())


def _speaker_of(name: str, folder: str) -> tuple[str, int | None]:
    m = _CLIP_NAME.match(name)
    if m is None:
        return folder, None
    return m.group("speaker"), int(m.group("n"))


def _read_list(root: Path, split: str, words: set[str]) -> list[str]:
    path = root / LIST_FILES[split]
    require_file(path, f"the {split} list of Speech Commands ('word/<speaker>_nohash_<n>.wav' lines)")
    entries: list[str] = []
    for n, line in enumerate(read_lines(path, "a Speech Commands list file"), start=1):
        rel = line.strip()
        if not rel:
            continue
        parts = rel.split("/")
        if len(parts) != 2 or not rel.endswith(".wav"):
            raise DataError(f"{path}:{n}: {rel!r} is not 'word/<file>.wav'")
        if parts[0] not in words:
            raise DataError(f"{path}:{n}: {rel!r} names a word folder that does not exist under {root}")
        entries.append(rel)
    return entries


def _word_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name != NOISE_DIR and p.name != "spkit")


def _label_of(word: str, task: str) -> str:
    return kws12_label(word) if task == "kws12" else word


def _clip(root: Path, rel: str, split: str, task: str, version: str, uid_prefix: str = "") -> Utterance:
    word, name = rel.split("/")
    speaker, n = _speaker_of(name, word)
    return Utterance(uid=make_uid(uid_prefix + rel), path=root / rel, split=split, speaker=speaker,
                     label=_label_of(word, task), text=word if word not in (UNKNOWN, SILENCE) else None,
                     meta={"word": word, "relpath": rel, "utterance_number": n, "version": version})


def _subsample_unknown(utts: list[Utterance], ratio: float, seed: int, split: str) -> list[Utterance]:
    """Keep ``ceil(ratio * #target-word clips)`` of the ``_unknown_`` clips, chosen by ``seed``."""
    known = [u for u in utts if u.label in KWS_WORDS]
    unknown = [u for u in utts if u.label == UNKNOWN]
    keep = min(len(unknown), math.ceil(ratio * len(known)))
    rng = np.random.default_rng([seed, zlib.crc32(f"unknown/{split}".encode())])
    chosen = set(rng.choice(len(unknown), size=keep, replace=False).tolist()) if keep else set()
    kept = [u for i, u in enumerate(unknown) if i in chosen]
    others = [u for u in utts if u.label != UNKNOWN]
    return sorted(others + kept, key=lambda u: u.uid)


def _noise_lengths(root: Path) -> list[tuple[Path, int, int]]:
    """``(path, frames, sample_rate)`` of each background noise wav (header only, no samples)."""
    noise_dir = require_dir(root / NOISE_DIR, "Speech Commands' background noise wavs (for _silence_)")
    out = []
    for p in sorted(noise_dir.glob("*.wav")):
        try:
            info = sf.info(str(p))
        except Exception as e:  # soundfile raises LibsndfileError, RuntimeError...
            raise DataError(f"{p}: unreadable background noise wav ({type(e).__name__}: {e})") from e
        out.append((p, int(info.frames), int(info.samplerate)))
    if not out:
        raise DataError(f"{noise_dir}: no .wav files; expected background noise recordings for _silence_")
    return out


def noise_region(frames: int, width: int, split: str) -> tuple[int, int]:
    """The ``[start, end)`` samples of a noise file that ``split``'s windows of ``width`` come from.

    valid and test each get the file's last ``max(10 %, one window)`` in turn (test at the very
    end), train the rest: 80/10/10 % for the real one-minute files, and still one window each for
    the short noise files of small synthesized corpora. Returns an empty region when the file is
    too short (under three windows).
    """
    tail = max(frames // 10, width)
    if frames - 2 * tail < width:
        return 0, 0
    bounds = {"train": (0, frames - 2 * tail), "valid": (frames - 2 * tail, frames - tail),
              "test": (frames - tail, frames)}
    return bounds[split]


def silence_windows(root: str | os.PathLike, split: str, count: int, seed: int = 0,
                    duration_s: float = 1.0, disjoint: bool = True) -> list[Utterance]:
    """``count`` deterministic ``_silence_`` windows of ``duration_s`` cut from ``<root>/_background_noise_``.

    Files are used in turn (window ``i`` comes from file ``i % n_files``) and each offset is drawn
    uniformly by ``numpy.random.default_rng([seed, crc32(split)])``. With ``disjoint`` each file
    contributes only its split's time region (:func:`noise_region`); a file too short to give every
    split a window is skipped.

    Returns:
        Utterances with ``path`` = the noise file, ``label`` = ``_silence_`` and ``meta`` holding
        ``offset_s``, ``duration_s``, ``offset``/``num_frames`` (samples at the file's own rate) and
        ``sample_rate``.
    """
    root = Path(root)
    if count <= 0:
        return []
    files = []
    for path, frames, sr in _noise_lengths(root):
        width = round(duration_s * sr)
        lo, hi = noise_region(frames, width, split) if disjoint else (0, frames)
        if hi - lo >= width:
            files.append((path, lo, hi - width, width, sr))
    if not files:
        raise DataError(f"{root / NOISE_DIR}: no background noise wav is long enough to cut "
                        f"{duration_s:g} s windows for the {split!r} split"
                        + (" (with disjoint regions a file needs three windows' length; try "
                           "disjoint_noise=False)" if disjoint else ""))
    rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
    utts = []
    for i in range(count):
        path, first, last, width, sr = files[i % len(files)]
        offset = int(rng.integers(first, last + 1))
        rel = path.relative_to(root).as_posix()
        utts.append(Utterance(
            uid=make_uid(f"{SILENCE}/{split}_{i:05d}_{path.stem}"), path=path, split=split,
            speaker=NOISE_DIR, label=SILENCE, text=None,
            meta={"noise_file": rel, "offset": offset, "num_frames": width, "sample_rate": sr,
                  "offset_s": offset / sr, "duration_s": width / sr}))
    return utts


def load_segment(path: str | os.PathLike, offset_s: float, duration_s: float,
                 sample_rate: int = 16_000):
    """Read ``duration_s`` seconds from ``offset_s`` of a WAV/FLAC file as ``(samples,)`` float32.

    Only that part of the file is read; it is downmixed and resampled to ``sample_rate`` Hz like
    :func:`spkit.audio.load_audio`. Raises :class:`spkit.audio.AudioError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file")
    try:
        info = sf.info(str(path))
        start = round(offset_s * info.samplerate)
        stop = start + round(duration_s * info.samplerate)
        if start < 0 or stop > info.frames:
            raise AudioError(path, f"segment {offset_s:.3f}+{duration_s:.3f} s lies outside the file "
                                   f"({info.frames / info.samplerate:.3f} s)")
        data, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=False)
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(path, f"unreadable audio ({type(e).__name__}: {e})") from e
    wave = torch.from_numpy(np.ascontiguousarray(to_mono(data)))
    if not torch.isfinite(wave).all():
        raise AudioError(path, "contains NaN or infinite samples")
    return validate(resample(wave, sr, sample_rate), path)


def class_balanced_draws(items: Sequence[T], labels: Sequence[str], *, seed: int = 0, split: str = "train",
                         n: int | None = None) -> list[T]:
    """s3prl's class-balanced sample of ``items``: ``n`` (default ``len(items)``) draws with replacement,
    item i with probability proportional to ``1 / count(labels[i])``, so every class is drawn equally
    often in expectation. Seeded by ``seed`` and ``split`` (same arguments -> same list, in draw order)."""
    if len(items) != len(labels):
        raise ValueError(f"class_balanced_draws: {len(items)} items but {len(labels)} labels")
    if not items:
        return []
    counts: dict[str, int] = {}
    for lb in labels:
        counts[lb] = counts.get(lb, 0) + 1
    w = np.array([1.0 / counts[lb] for lb in labels])
    rng = np.random.default_rng([seed, zlib.crc32(f"balanced/{split}".encode())])
    picks = rng.choice(len(items), size=len(items) if n is None else int(n), replace=True, p=w / w.sum())
    return [items[i] for i in picks.tolist()]


def load_test_set(test_root: str | os.PathLike, task: str = "kws12",
                  version: str = "v0.01") -> list[Utterance]:
    """SUPERB's separate test folder: ``<label>/<file>.wav``, labels = folder names.

    Folder names must be KWS words, ``_unknown_`` or ``_silence_`` (``kws12``), or words of the
    release (``full``, which has no ``_silence_``/``_unknown_``).
    """
    test_root = require_dir(test_root, "a Speech Commands test folder (<label>/<file>.wav, e.g. "
                                       "speech_commands_test_set_v0.01)")
    allowed = set(KWS12_LABELS) if task == "kws12" else set(words_for(version))
    utts = []
    for folder in _word_folders(test_root):
        if folder not in allowed:
            raise DataError(f"{test_root / folder}: folder {folder!r} is not a {task} label; "
                            f"expected folders among {sorted(allowed)}")
        for wav in sorted((test_root / folder).glob("*.wav")):
            rel = f"{folder}/{wav.name}"
            # Prefixed: the test folder reuses file names of the release's own test clips.
            utts.append(_clip(test_root, rel, "test", task, version, uid_prefix=TEST_SET_PREFIX))
    if not utts:
        raise DataError(f"{test_root}: no <label>/*.wav clips found; expected a Speech Commands test folder")
    check_unique_uids(utts, test_root)
    return utts


def load_speech_commands(root: str | os.PathLike, split: str | Sequence[str] | None = None, *,
                         task: str = "kws12", version: str | None = None,
                         test_root: str | os.PathLike | None = None, seed: int = 0,
                         silence_ratio: float = 0.1, silence_count: dict[str, int] | None = None,
                         disjoint_noise: bool = True, unknown_ratio: float | None = None,
                         check_files: bool = True) -> dict[str, list[Utterance]]:
    """List Speech Commands clips per split as ``{split: [Utterance, ...]}`` (sorted by uid).

    Args:
        root: the release folder (``speech_commands_v0.01``), or SUPERB's test folder alone.
        split: a split or list of splits to return (None: train, valid, test).
        task: ``kws12`` (10 words + ``_unknown_`` + ``_silence_``) or ``full`` (every word).
        version: ``v0.01``/``v0.02``; None detects it from the word folders.
        test_root: SUPERB's separate test folder; replaces ``testing_list.txt`` as the test split.
        seed: seeds the ``_silence_`` windows and the ``_unknown_`` subsampling.
        silence_ratio: ``kws12`` only: ``_silence_`` windows per split =
            ``ceil(silence_ratio * #clips of the ten words in that split)`` (TensorFlow's 10 %).
            Not used for a ``test_root`` test split, whose silence clips are files.
        silence_count: exact window counts per split, overriding ``silence_ratio``.
        disjoint_noise: cut each split's windows from its own time region of every noise file.
        unknown_ratio: ``kws12`` only: keep ``ceil(unknown_ratio * #ten-word clips)`` ``_unknown_``
            clips per split (seeded); None keeps all of them (SUPERB does).
        check_files: also check that every clip in the list files exists (they are listed anyway:
            the folders are walked, so this only costs the list look-ups).

    Raises:
        DataError: a missing folder or list file, a list line naming a missing clip or word folder,
            a clip name not ``<speaker>_nohash_<n>.wav``, a clip listed in both lists.
    """
    if task not in TASKS:
        raise ValueError(f"unknown Speech Commands task {task!r}; expected one of {TASKS}")
    root = require_dir(root, "a Speech Commands folder (<word>/<speaker>_nohash_<n>.wav, "
                             "validation_list.txt, testing_list.txt, _background_noise_/)")
    splits = wanted_splits(split)
    if is_test_set_layout(root) and test_root is None:
        if "test" not in splits:
            raise DataError(f"{root}: a Speech Commands test folder (_silence_/, _unknown_/, no list "
                            f"files) holds only the test split; asked for {list(splits)}")
        return {"test": load_test_set(root, task, version or "v0.01")}
    version = version or detect_version(root)
    vocabulary = set(words_for(version))
    folders = _word_folders(root)
    if not folders:
        raise DataError(f"{root}: no word folders; expected <word>/<speaker>_nohash_<n>.wav clips")
    unexpected = [f for f in folders if f not in vocabulary]
    if unexpected:
        raise DataError(f"{root}: folder(s) {unexpected} are not Speech Commands {version} words "
                        f"(expected some of {sorted(vocabulary)})")

    # Walk every clip once: the list files only say which split each belongs to.
    all_clips: dict[str, str] = {}
    for word in folders:
        for wav in sorted((root / word).glob("*.wav")):
            if _CLIP_NAME.match(wav.name) is None:
                raise DataError(f"{wav}: clip name is not '<speaker>_nohash_<n>.wav'")
            all_clips[f"{word}/{wav.name}"] = "train"
    assigned: dict[str, tuple[str, Path]] = {}
    for which in ("valid", "test"):
        list_path = root / LIST_FILES[which]
        for rel in _read_list(root, which, set(folders)):
            if check_files and rel not in all_clips:
                raise DataError(f"{list_path}: lists {rel!r}, but {root / rel} does not exist")
            if rel in assigned and assigned[rel][0] != which:
                raise DataError(f"{list_path}: {rel!r} is also listed in {assigned[rel][1]}")
            assigned[rel] = (which, list_path)
            all_clips[rel] = which

    out: dict[str, list[Utterance]] = {s: [] for s in splits}
    for rel, which in all_clips.items():
        if which in out and not (which == "test" and test_root is not None):
            out[which].append(_clip(root, rel, which, task, version))
    if test_root is not None and "test" in out:
        out["test"] = load_test_set(test_root, task, version)
        trained = {_label_of(rel.split("/")[0], task) for rel, which in all_clips.items() if which == "train"}
        if task == "kws12" and (silence_count or {}).get("train", 1) > 0:
            trained.add(SILENCE)  # training silence comes from the noise files
        extra = sorted({u.label for u in out["test"]} - trained)
        if extra:
            raise DataError(f"{test_root}: the test folder has class(es) {extra} that the training clips of "
                            f"{root} lack; a prompt cannot learn a class it never sees")

    for which in out:
        utts = sorted(out[which], key=lambda u: u.uid)
        if task == "kws12":
            if unknown_ratio is not None and not (which == "test" and test_root is not None):
                utts = _subsample_unknown(utts, unknown_ratio, seed, which)
            if not (which == "test" and test_root is not None):
                n_known = sum(u.label in KWS_WORDS for u in utts)
                count = (silence_count or {}).get(which, math.ceil(silence_ratio * n_known))
                utts = utts + silence_windows(root, which, count, seed=seed, disjoint=disjoint_noise)
        check_unique_uids(utts, root)
        out[which] = utts
    return {s: out[s] for s in SPLITS if s in out}

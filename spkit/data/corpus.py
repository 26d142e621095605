"""One entry point for every corpus: :func:`load_corpus`, and :func:`load_utterance` for the audio."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spkit.audio import load_audio
from spkit.data.alignments import attach_alignments
from spkit.data.base import Utterance
from spkit.data.detect import KINDS, detect_layout
from spkit.data.fluent import load_fluent
from spkit.data.fluent import resolve_root as fluent_root
from spkit.data.librispeech import load_librispeech
from spkit.data.manifest import load_tsv_corpus
from spkit.data.snips import load_snips
from spkit.data.snips import resolve_root as snips_root
from spkit.data.speech_commands import load_segment, load_speech_commands

ALIASES = {"sc": "speech_commands", "speechcommands": "speech_commands", "kws": "speech_commands",
           "fsc": "fluent", "intent": "fluent", "libri": "librispeech", "asr": "librispeech",
           "lid": "tsv", "manifest": "tsv", "sf": "snips", "audio_snips": "snips"}


def load_corpus(kind: str, root: str | os.PathLike, split: str | Sequence[str] | None = None, *,
                check_files: bool = True, alignments: bool = True,
                **options: Any) -> dict[str, list[Utterance]]:
    """List a corpus as ``{split: [Utterance, ...]}`` with splits in ``train, valid, test`` order.

    Args:
        kind: ``speech_commands``, ``fluent``, ``librispeech``, ``snips``, ``tsv`` (aliases: ``kws``,
            ``fsc``, ``asr``, ``sf``, ``lid``...), or ``auto`` to detect it with
            :func:`spkit.data.detect_layout`.
        root: the corpus folder (or a ``.tsv`` file for ``tsv``).
        split: one split or a list of them; None: every split the corpus has.
        check_files: check that the listed audio files exist (see each loader).
        alignments: attach ``<root>/spkit/alignments.jsonl`` (spkit's synthesized corpora) when present.
        **options: passed to the loader, e.g. ``task``, ``test_root``, ``seed`` for Speech Commands,
            ``subsets`` for LibriSpeech, ``speakers`` for Audio SNIPS.
    """
    root = Path(root)
    key = kind.lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key == "auto":
        key = detect_layout(root).kind
    if key not in KINDS:
        raise ValueError(f"unknown corpus kind {kind!r}; expected one of {[*KINDS, 'auto']} "
                         f"or an alias {sorted(ALIASES)}")
    search = [root]
    if key == "speech_commands":
        out = load_speech_commands(root, split, check_files=check_files, **options)
    elif key == "fluent":
        out = load_fluent(root, split, check_files=check_files, **options)
        search.insert(0, fluent_root(root))
    elif key == "snips":
        out = load_snips(root, split, check_files=check_files, **options)
        search.insert(0, snips_root(root))
    elif key == "librispeech":
        out = load_librispeech(root, split, check_files=check_files, **options)
        search += [root / "LibriSpeech", root.parent]
    else:
        out = load_tsv_corpus(root, split, check_files=check_files, **options)
        if root.is_file():
            search = [root.parent]
    return attach_alignments(out, *search) if alignments else out


def load_utterance(utt: Utterance, sample_rate: int = 16_000):
    """The audio of ``utt`` as a mono float32 tensor ``(samples,)`` at ``sample_rate`` Hz.

    Clips cut from a longer file (``meta["offset_s"]``/``meta["duration_s"]``: Speech Commands'
    ``_silence_`` windows) read only their window; others go through :func:`spkit.audio.load_audio`.
    """
    if "offset_s" in utt.meta:
        return load_segment(utt.path, utt.meta["offset_s"], utt.meta["duration_s"], sample_rate)

    return load_audio(utt.path, sample_rate)

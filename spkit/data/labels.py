"""Label sets per task, in a fixed order (the order verbalizers and classifiers index them by).

* keyword spotting: the 12 SUPERB labels ``yes no up down left right on off stop go _unknown_
  _silence_`` (or the 30/35 words of the full task, sorted);
* intent (Fluent Speech Commands): the sorted values of each slot, and the sorted flattened intents;
* language identification: the sorted languages;
* ASR: the sorted characters of the transcripts, with the word boundary (``|``, fairseq's letter
  convention) first.

Given a ``{split: utterances}`` mapping, every function reads its ``train`` split only: no valid or test
label reaches the label set (a test label unseen in training is then an error where the task is built,
:func:`spkit.prompt.tasks.check_labels`, or ``<unk>`` for ASR characters).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from spkit.data.base import DataError, Utterance
from spkit.data.fluent import SLOTS, intent_string
from spkit.data.speech_commands import KWS12_LABELS, words_for

WORD_BOUNDARY = "|"


def _all(corpus: Mapping[str, Sequence[Utterance]] | Iterable[Utterance]) -> list[Utterance]:
    """The utterances a label set is built from: a split mapping's ``train`` split, or the given ones."""
    if isinstance(corpus, Mapping):
        if "train" not in corpus:
            raise DataError(f"a label set is built from the training split; the corpus has only "
                            f"{sorted(corpus)}")
        return list(corpus["train"])
    return list(corpus)


def kws_labels(task: str = "kws12", version: str = "v0.01") -> list[str]:
    """``kws12``: the 12 SUPERB labels in SUPERB's order; ``full``: the release's words, sorted."""
    if task == "kws12":
        return list(KWS12_LABELS)
    if task == "full":
        return list(words_for(version))
    raise ValueError(f"unknown keyword-spotting task {task!r}; expected 'kws12' or 'full'")


def intent_vocab(corpus: Mapping[str, Sequence[Utterance]] | Iterable[Utterance]) -> dict[str, list[str]]:
    """``{"action": [...], "object": [...], "location": [...], "intent": ["a|o|l", ...]}``, each sorted.

    Built from the clips given (pass the train split alone to get the training vocabulary).
    """
    vocab: dict[str, set[str]] = {s: set() for s in (*SLOTS, "intent")}
    for u in _all(corpus):
        if not isinstance(u.label, Mapping) or any(s not in u.label for s in SLOTS):
            raise DataError(f"{u.path}: label {u.label!r} is not an intent dict with slots {list(SLOTS)}")
        for s in SLOTS:
            vocab[s].add(u.label[s])
        vocab["intent"].add(intent_string(u.label))
    return {k: sorted(v) for k, v in vocab.items()}


def class_labels(corpus: Mapping[str, Sequence[Utterance]] | Iterable[Utterance]) -> list[str]:
    """The sorted distinct string labels (LID languages, or any single-label task)."""
    labels = set()
    for u in _all(corpus):
        if not isinstance(u.label, str) or not u.label:
            raise DataError(f"{u.path}: label {u.label!r} is not a class name")
        labels.add(u.label)
    return sorted(labels)


def asr_charset(corpus: Mapping[str, Sequence[Utterance]] | Iterable[Utterance],
                word_boundary: str = WORD_BOUNDARY) -> list[str]:
    """The transcripts' characters, sorted, with ``word_boundary`` (standing for spaces) first."""
    chars: set[str] = set()
    for u in _all(corpus):
        if u.text is None:
            raise DataError(f"{u.path}: no transcript; ASR needs a text for every clip")
        chars.update(u.text)
    has_space = " " in chars
    chars.discard(" ")
    if word_boundary in chars:
        raise DataError(f"the word boundary {word_boundary!r} occurs inside a transcript; pick another")
    return ([word_boundary] if has_space else []) + sorted(chars)


def label_set(kind: str, corpus: Mapping[str, Sequence[Utterance]] | Iterable[Utterance] | None = None,
              **options: Any) -> list[str] | dict[str, list[str]]:
    """The label set of a corpus kind's task.

    ``speech_commands`` -> :func:`kws_labels` (``task``, ``version`` options; no corpus needed),
    ``fluent`` -> :func:`intent_vocab`, ``tsv``/``lid`` -> :func:`class_labels`,
    ``librispeech``/``asr`` -> :func:`asr_charset`.
    """
    if kind == "speech_commands":
        return kws_labels(options.get("task", "kws12"), options.get("version", "v0.01"))
    if corpus is None:
        raise ValueError(f"label_set({kind!r}) needs the corpus (or its train split)")
    if kind == "fluent":
        return intent_vocab(corpus)
    if kind in ("tsv", "lid"):
        return class_labels(corpus)
    if kind in ("librispeech", "asr"):
        return asr_charset(corpus, options.get("word_boundary", WORD_BOUNDARY))
    raise ValueError(f"unknown corpus kind {kind!r}; expected speech_commands, fluent, tsv, lid, "
                     f"librispeech or asr")

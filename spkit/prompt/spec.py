"""What a task is, below everything that uses it: its :class:`TaskSpec`, its :class:`TaskExample` s, its
:class:`TaskError`, and the token constants of the unit-to-unit formulation (:mod:`spkit.prompt.tasks` tells
the whole formulation; it builds specs and examples from unit files, and batches them with a verbalizer).

The verbalizer (:mod:`spkit.prompt.verbalizer`) maps a spec's label atoms to tokens, and the collator in
:mod:`spkit.prompt.tasks` needs the verbalizer; both import this module, which imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spkit.audio import load_audio
from spkit.data.speech_commands import load_segment
from spkit.errors import UserError
from spkit.prompt.slots import symbols_to_tagged, tagged_symbols

TASKS: tuple[str, ...] = ("kws", "intent", "lid", "asr", "sf")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
SEP_IDX = 0  # <s>: the separator token (trainable embedding)
BOS_IDX = 2  # </s> doubles as BOS in fairseq LMs
EOS_IDX = 2
PAD_IDX = 1
WORD_BOUNDARY = "|"
UNK_CHAR = "<unk>"  # ASR: any character unseen in training
UNK_DECODED = "\ufffd"  # what UNK_CHAR decodes to (matches no reference character)
INTENT_SLOTS: tuple[str, ...] = ("action", "object", "location")
LOSS_POSITIONS: tuple[str, ...] = ("sep_label_eos", "label_eos", "label")
KWS12: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
                          "_unknown_", "_silence_")


class TaskError(UserError, ValueError):
    """An unknown task, or labels that do not fit the task or its verbalizer."""


@dataclass(frozen=True)
class TaskSpec:
    """What a task predicts and how it is scored.

    Attributes:
        name: ``kws``, ``intent``, ``lid``, ``asr`` or ``sf``.
        kind: ``classification`` (pick one of ``labels``) or ``sequence`` (generate atoms freely).
        labels: classification: the classes, in index order (probabilities and class ids follow it);
            sequence: the character set (``|`` first when the transcripts have spaces); sf: the symbols
            (:func:`spkit.prompt.slots.symbol_set`).
        metric: ``accuracy``, ``cer`` (ASR also reports ``wer``) or ``slot_type_f1`` (SF, with
            ``slot_value_cer``).
        lower_is_better: True for error rates.
        atom_mode: ``label`` (one atom per label), ``slots`` (intent: one per slot), ``chars`` (ASR) or
            ``slot_symbols`` (SF: slot types, value characters, slot ends).
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    metric: str
    lower_is_better: bool
    atom_mode: str = "label"

    def __post_init__(self) -> None:
        if self.kind not in ("classification", "sequence"):
            raise TaskError(f"TaskSpec {self.name!r}: kind {self.kind!r} is not classification|sequence")
        if self.atom_mode not in ("label", "slots", "chars", "slot_symbols"):
            raise TaskError(f"TaskSpec {self.name!r}: atom_mode {self.atom_mode!r} is not "
                            "label|slots|chars|slot_symbols")
        if not self.labels:
            raise TaskError(f"TaskSpec {self.name!r}: no labels")
        if len(set(self.labels)) != len(self.labels):
            raise TaskError(f"TaskSpec {self.name!r}: duplicate labels")

    @property
    def num_classes(self) -> int:
        """Number of classes (classification) or characters (sequence)."""
        return len(self.labels)

    @property
    def eos_in_loss(self) -> bool:
        """Sequence tasks always learn to emit ``</s>`` after the label; classification tasks do unless the
        collator's ``loss_positions`` is ``label``."""
        return self.kind == "sequence"

    def atoms(self, label: str) -> list[str]:
        """Split a label string into verbalizer atoms (see the module docstring)."""
        if self.atom_mode == "label":
            return [label]
        if self.atom_mode == "slots":
            parts = label.split("|")
            if len(parts) != len(INTENT_SLOTS):
                raise TaskError(f"intent label {label!r} is not 'action|object|location'")
            return [f"{s}={v}" for s, v in zip(INTENT_SLOTS, parts)]
        if self.atom_mode == "slot_symbols":
            symbols = tagged_symbols(label, slots_only=True)
            if UNK_CHAR in self.labels:  # a slot type or character unseen in training
                known = set(self.labels)
                symbols = [a if a in known else UNK_CHAR for a in symbols]
            return symbols
        unk = UNK_CHAR in self.labels  # prompt files made before <unk> existed stay strict
        known = set(self.labels)
        return [WORD_BOUNDARY if c == " " else (UNK_CHAR if unk and c not in known else c) for c in label]

    def label_from_atoms(self, atoms: Sequence[str]) -> str:
        """Inverse of :meth:`atoms` (ASR: ``|`` back to spaces)."""
        if self.atom_mode == "label":
            return atoms[0] if len(atoms) == 1 else "".join(atoms)
        if self.atom_mode == "slots":
            return "|".join(a.split("=", 1)[1] if "=" in a else a for a in atoms)
        if self.atom_mode == "slot_symbols":
            return symbols_to_tagged([UNK_DECODED if a == UNK_CHAR else a for a in atoms])
        return "".join(" " if a == WORD_BOUNDARY else UNK_DECODED if a == UNK_CHAR else a for a in atoms)

    def all_atoms(self) -> list[str]:
        """Every atom the verbalizer must encode, in a fixed order."""
        if self.atom_mode == "slots":
            seen: dict[str, None] = {}
            for slot_i in range(len(INTENT_SLOTS)):
                for label in self.labels:
                    seen.setdefault(self.atoms(label)[slot_i], None)
            return list(seen)
        return list(self.labels)

    def class_index(self, label: str) -> int:
        """Index of a classification label; TaskError if it is not one of ``labels``."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise TaskError(f"task {self.name!r}: label {label!r} is not among its {len(self.labels)} "
                            f"classes") from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "labels": list(self.labels), "metric": self.metric,
                "lower_is_better": self.lower_is_better, "atom_mode": self.atom_mode}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSpec:
        return cls(name=d["name"], kind=d["kind"], labels=tuple(d["labels"]), metric=d["metric"],
                   lower_is_better=bool(d["lower_is_better"]), atom_mode=d.get("atom_mode", "label"))


@dataclass(frozen=True)
class TaskExample:
    """One utterance of a task.

    Attributes:
        uid, path, split, speaker: as in the unit records.
        units: the deduplicated unit ids (k-means cluster ids, not token indices).
        label: kws/lid: the class; intent: ``"action|object|location"``; asr: the transcript.
        offset_s, duration_s: the clip is this window of ``path`` (Speech Commands' ``_silence_``).
    """

    uid: str
    path: str
    split: str
    speaker: str
    units: list[int] = field(compare=False)
    label: str
    offset_s: float | None = None
    duration_s: float | None = None

    def load_audio(self, sample_rate: int = 16_000):
        """The clip's waveform ``(samples,)`` at ``sample_rate`` (only its window when it has one)."""
        if self.offset_s is not None:
            return load_segment(self.path, self.offset_s, self.duration_s or 1.0, sample_rate)

        return load_audio(self.path, sample_rate)


def length_order(examples: Sequence[TaskExample]) -> list[int]:
    """Indices of ``examples`` from fewest to most units (stable): batches taken in this order pad little."""
    return sorted(range(len(examples)), key=lambda i: len(examples[i].units))

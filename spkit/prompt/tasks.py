"""Speech tasks rewritten as unit-to-unit generation (SpeechPrompt's formulation).

Every example becomes one token sequence for the frozen uLM::

    [</s>, u_1 .. u_n, <sep>, l_1 .. l_k, </s>]

* ``</s>`` (index 2) is the BOS, as in fairseq LM training; ``u_i`` are the token indices of the
  (deduplicated) input units (:class:`spkit.ulm.UnitDictionary` maps unit ids to indices);
* ``<sep>`` is token index 0 (``<s>``), whose embedding the prompted model replaces by a trainable vector
  initialised from the frozen ``<s>`` embedding (:class:`spkit.prompt.model.PromptedULM`);
* ``l_1 .. l_k`` are the verbalizer's tokens for the label (:mod:`spkit.prompt.verbalizer`);
* the loss covers only the task part (:data:`LOSS_POSITIONS`): ``sep_label_eos`` is SpeechPrompt's (the
  last unit predicts ``<sep>``, then ``l_1 .. l_k`` and the final ``</s>``: their criterion masks every
  target from ``<s>`` on); ``label_eos`` (the default) leaves out the ``<sep>`` target, which asks a causal
  LM to predict where its input ends (on the toy task of tests/test_prompt.py, 30 epochs: constrained
  accuracy 0.39 with it, 0.98 without); ``label`` keeps only the label targets (plus ``</s>`` for sequence
  tasks), so greedy decoding never learns to stop. With a
  learnable verbalizer the label tokens are not fed at all: the class scores come from the next-token
  logits at the ``<sep>`` position.

Tasks (the unit files' records carry the labels, so the embedded corpora and the real data sets run
through the same code):

=========  ==============  ===================================================  ============
task       kind            label string                                         metric
=========  ==============  ===================================================  ============
``kws``    classification  the keyword class (12 SUPERB classes, or all words)  accuracy
``intent`` classification  ``"action|object|location"`` (all three must match)  accuracy
``lid``    classification  the language                                         accuracy
``asr``    sequence        the transcript (characters; ``|`` = word boundary)   cer (+ wer)
``sf``     sequence        the tagged transcript (``B-type value E-type``)      slot_type_f1
                                                                                (+ slot_value_cer)
=========  ==============  ===================================================  ============

Label sets come from the training split alone (:func:`build_spec`): a valid or test label never seen in
training is an error naming the file, the uid and the label (:func:`check_labels`), except ASR characters:
the character set ends with :data:`UNK_CHAR` (``<unk>``), which stands for any character unseen in
training (it is the target in their place, and decodes to U+FFFD, so it never matches a reference
character and counts as an error).

A label is split into *atoms*, the units a verbalizer maps to token sequences: the whole label (kws,
lid, intent with ``intent_mode="flat"``), one atom per slot value (intent, default ``"slots"``:
``action=activate``, ``object=lights``, ``location=kitchen``, prefixed because FSC uses ``none`` in two
slots), or one atom per character (asr, spaces written as ``|``), or, for slot filling, the slot types and
values only: ``B-<type>``, the value's characters, ``<E>`` per slot (:mod:`spkit.prompt.slots`; the words
outside slots are not generated, SUPERB's metrics read only the slots).

Truncation: inputs longer than the room left by the uLM's ``max_positions`` (or ``max_units``) lose units
from the *right* by default (``truncate="right"`` keeps the beginning of the clip); ``truncate="left"``
keeps the end instead. Label tokens are never truncated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from spkit.data.base import DataError
from spkit.data.snips import parse_tagged
from spkit.prompt.slots import symbol_set
from spkit.prompt.spec import (
    BOS_IDX,
    EOS_IDX,
    INTENT_SLOTS,
    KWS12,
    LOSS_POSITIONS,
    PAD_IDX,
    SEP_IDX,
    SPLITS,
    TASKS,
    UNK_CHAR,
    WORD_BOUNDARY,
    TaskError,
    TaskExample,
    TaskSpec,
)

# re-exported: the whole task API stays importable from this module
from spkit.prompt.spec import UNK_DECODED as UNK_DECODED
from spkit.prompt.spec import length_order as length_order
from spkit.prompt.verbalizer import Verbalizer

if TYPE_CHECKING:
    from spkit.ulm.dictionary import UnitDictionary

def _check_task(task: str) -> None:
    if task not in TASKS:
        raise TaskError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def _record_label(task: str, rec: Mapping[str, Any], where: str) -> str:
    """The label string of a unit record for ``task``; DataError naming ``where`` if it has none."""
    if task == "sf":
        return _sf_record_label(rec, where)
    if task == "asr":
        text = rec.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: no transcript ('text'); ASR needs one for every clip")
        return " ".join(text.split())
    label = rec.get("label")
    if task == "intent":
        if isinstance(label, Mapping):
            missing = [s for s in INTENT_SLOTS if not label.get(s)]
            if missing:
                raise DataError(f"{where}: intent label {label!r} lacks slots {missing}")
            return "|".join(str(label[s]) for s in INTENT_SLOTS)
        if isinstance(label, str) and len(label.split("|")) == len(INTENT_SLOTS):
            return label
        raise DataError(f"{where}: label {label!r} is not an intent (a dict with slots "
                        f"{list(INTENT_SLOTS)} or 'action|object|location')")
    if not isinstance(label, str) or not label:
        raise DataError(f"{where}: label {label!r} is not a class name (task {task!r})")
    if "|" in label:
        raise DataError(f"{where}: class label {label!r} contains '|'")
    return label


def _sf_record_label(rec: Mapping[str, Any], where: str) -> str:
    """The tagged transcript of an SF record; DataError naming ``where`` when it is missing or its slot tags
    are unbalanced."""
    label = rec.get("label")
    if not isinstance(label, str) or not label.strip():
        raise DataError(f"{where}: label {label!r} is not a tagged transcript ('.. B-type VALUE E-type ..'); "
                        "slot filling needs one for every clip")
    parse_tagged(label, where)
    return " ".join(label.split())


def sf_spec(train: Sequence[TaskExample]) -> TaskSpec:
    """The slot-filling :class:`TaskSpec`: its symbols (slot types, ``<E>``, ``|``, characters) from the
    training examples' tagged transcripts, then :data:`UNK_CHAR` for any symbol unseen in training; scored
    by SUPERB's slot-type F1 (slot-value CER beside it)."""
    # UNK_CHAR last, as for ASR: a slot type or character unseen in training (it counts as an error)
    symbols = (*symbol_set([e.label for e in train]), UNK_CHAR)
    return TaskSpec("sf", "sequence", symbols, "slot_type_f1", False, "slot_symbols")


def read_examples(task: str, path: str | os.PathLike, split: str | None = None) -> list[TaskExample]:
    """Read one ``<split>.jsonl`` unit-record file (see :mod:`spkit.units.quantize`) as examples."""
    _check_task(task)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such unit-record file (run the quantize stage for this split)")
    out: list[TaskExample] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e})") from None
            units = rec.get("units")
            if not isinstance(units, list) or not all(isinstance(u, int) for u in units):
                raise DataError(f"{where}: 'units' must be a list of integer unit ids")
            if "uid" not in rec:
                raise DataError(f"{where}: record has no 'uid'")
            out.append(TaskExample(uid=str(rec["uid"]), path=str(rec.get("path", "")),
                                   split=str(rec.get("split") or split or path.stem),
                                   speaker=str(rec.get("speaker", "")), units=units,
                                   label=_record_label(task, rec, f"{where} (uid {rec['uid']})"),
                                   offset_s=rec.get("offset_s"), duration_s=rec.get("duration_s")))
    if not out:
        raise DataError(f"{path}: no records")
    return out


def load_task(task: str, units_dir: str | os.PathLike, splits: Sequence[str] = SPLITS,
              spec: TaskSpec | None = None) -> dict[str, list[TaskExample]]:
    """Load ``units_dir/<split>.jsonl`` for each split as task examples.

    Args:
        task: one of :data:`TASKS`.
        units_dir: a corpus' unit folder (``RunLayout.unit_dir(corpus)``).
        splits: the splits to read; every one must exist.
        spec: when given, every label must fit it (:func:`check_labels`).
    Raises:
        TaskError for an unknown task or labels outside ``spec``; DataError naming the file for a
        missing or malformed unit file.
    """
    _check_task(task)
    units_dir = Path(units_dir)
    if not units_dir.is_dir():
        raise DataError(f"{units_dir}: no such unit folder")
    data = {s: read_examples(task, units_dir / f"{s}.jsonl", s) for s in splits}
    if spec is not None:
        check_labels(spec, data, units_dir)
    return data


def build_spec(task: str, data: Mapping[str, Sequence[TaskExample]] | Sequence[TaskExample],
               intent_mode: str = "slots") -> TaskSpec:
    """The :class:`TaskSpec` of ``task``, its labels taken from the training examples.

    ``data``: ``{split: examples}`` (its ``train`` split is used) or the training examples themselves.
    kws: the 12 SUPERB classes in SUPERB's order when every label is one of them, else the sorted words;
    lid and intent: the sorted labels seen in training; asr: the sorted characters, ``|`` first,
    :data:`UNK_CHAR` last.
    ``intent_mode``: ``slots`` (one verbalizer atom per slot) or ``flat`` (one per intent).
    """
    _check_task(task)
    if isinstance(data, Mapping):
        if "train" not in data:
            raise TaskError(f"build_spec({task!r}): no 'train' split to take the labels from")
        train = data["train"]
    else:
        train = data
    if not train:
        raise TaskError(f"build_spec({task!r}): no training examples")
    if task == "sf":
        return sf_spec(train)
    labels = {e.label for e in train}
    if task == "kws":
        ordered = tuple(lb for lb in KWS12 if lb in labels) if labels <= set(KWS12) else tuple(sorted(labels))
        return TaskSpec("kws", "classification", ordered, "accuracy", False)
    if task == "lid":
        return TaskSpec("lid", "classification", tuple(sorted(labels)), "accuracy", False)
    if task == "intent":
        if intent_mode not in ("slots", "flat"):
            raise TaskError(f"intent_mode {intent_mode!r} is not 'slots' or 'flat'")
        return TaskSpec("intent", "classification", tuple(sorted(labels)), "accuracy", False,
                        "slots" if intent_mode == "slots" else "label")
    chars = {c for e in train for c in e.label}
    if WORD_BOUNDARY in chars:
        raise TaskError(f"a transcript contains the word-boundary character {WORD_BOUNDARY!r}")
    has_space = " " in chars
    chars.discard(" ")
    return TaskSpec("asr", "sequence",
                    tuple(([WORD_BOUNDARY] if has_space else []) + sorted(chars) + [UNK_CHAR]),
                    "cer", True, "chars")


def check_labels(spec: TaskSpec, data: Mapping[str, Sequence[TaskExample]],
                 where: str | os.PathLike = "") -> None:
    """Raise TaskError if any example's label cannot be expressed by ``spec``.

    Classification: the label must be one of ``spec.labels`` (a class unseen in training cannot be
    predicted); ASR: every character must be in the character set. The message names the split file,
    the uid and the offending label, and how many examples are affected.
    """
    allowed = set(spec.labels)
    for split, examples in data.items():
        bad = []
        for e in examples:
            if spec.kind == "classification":
                ok = e.label in allowed
            else:
                ok = all(a in allowed for a in spec.atoms(e.label))
            if not ok:
                bad.append(e)
        if bad:
            src = f"{Path(where) / f'{split}.jsonl'}" if where else f"split {split!r}"
            e = bad[0]
            what = ("classes" if spec.kind == "classification" else "characters")
            raise TaskError(f"{src}: label {e.label!r} (uid {e.uid!r}) is not in the training split's {what}"
                            f" ({len(bad)} example(s) affected); task {spec.name!r} knows "
                            f"{list(spec.labels)[:20]}{' ...' if len(spec.labels) > 20 else ''}")


# ------------------------------------------------------------------------------------------------
# Batching
# ------------------------------------------------------------------------------------------------

@dataclass
class PromptBatch:
    """A right-padded batch of task sequences.

    Attributes:
        tokens: (B, T) long, ``[</s>, units.., <sep>, label tokens.., (</s>)]`` then pad_idx.
        padding_mask: (B, T) bool, True at pads.
        sep_pos: (B,) long, position of ``<sep>`` (its logits predict the first label token).
        targets: (B, T) long, the next token at the loss positions (:data:`LOSS_POSITIONS`), pad_idx
            elsewhere: feed to ``lm_loss(logits, targets)``.
        label_mask: (B, T) bool, ``targets != pad_idx``.
        class_ids: (B,) long, index into ``spec.labels`` (classification) or -1 (sequence).
        input_lengths: (B,) long, number of unit tokens kept after truncation.
        uids: the examples' uids, in batch order.
        labels: the examples' label strings.
    """

    tokens: Tensor
    padding_mask: Tensor
    sep_pos: Tensor
    targets: Tensor
    label_mask: Tensor
    class_ids: Tensor
    input_lengths: Tensor
    uids: list[str]
    labels: list[str]

    def to(self, device: torch.device | str) -> PromptBatch:
        """The same batch with every tensor on ``device``."""
        return PromptBatch(*(getattr(self, f).to(device) for f in
                             ("tokens", "padding_mask", "sep_pos", "targets", "label_mask", "class_ids",
                              "input_lengths")), self.uids, self.labels)

    def prefixes(self) -> tuple[Tensor, Tensor]:
        """The ``[</s>, units.., <sep>]`` part only: tokens (B, S) and padding mask (B, S), right-padded,
        S = max(sep_pos) + 1 (what constrained scoring and decoding start from)."""
        S = int(self.sep_pos.max()) + 1
        tokens = self.tokens[:, :S].clone()
        mask = torch.arange(S, device=tokens.device)[None, :] > self.sep_pos[:, None]
        tokens[mask] = PAD_IDX
        return tokens, mask


@dataclass
class Collator:
    """Builds :class:`PromptBatch` es from :class:`TaskExample` s (picklable, for DataLoader workers).

    Attributes:
        spec: the task.
        verbalizer: maps label atoms to token sequences (``learnable``: no label tokens are fed).
        dictionary: unit id -> token index; unknown units map to ``<unk>`` (3).
        max_len: longest whole sequence (usually the uLM's ``max_positions``); units are truncated to fit.
        max_units: optional cap on the number of input units (after deduplication).
        truncate: ``right`` drops units at the end (default), ``left`` drops them at the start.
        with_labels: False builds prefixes only (inference on unlabelled inputs).
        loss_positions: one of :data:`LOSS_POSITIONS` (see the module docstring).
    """

    spec: TaskSpec
    verbalizer: Verbalizer
    dictionary: UnitDictionary
    max_len: int | None = None
    max_units: int | None = None
    truncate: str = "right"
    with_labels: bool = True
    loss_positions: str = "label_eos"

    def __post_init__(self) -> None:
        if self.truncate not in ("left", "right"):
            raise ValueError(f"truncate must be 'left' or 'right', got {self.truncate!r}")
        if self.loss_positions not in LOSS_POSITIONS:
            raise ValueError(f"loss_positions must be one of {LOSS_POSITIONS}, got {self.loss_positions!r}")

    def label_tokens(self, label: str) -> list[int]:
        """The label's token sequence, plus ``</s>`` when it is a target (sequence tasks, or
        ``sep_label_eos``); empty for learnable verbalizers."""
        if self.verbalizer.head is not None or not self.with_labels:
            return []
        toks = self.verbalizer.encode_atoms(self.spec.atoms(label))
        eos = self.spec.eos_in_loss or self.loss_positions != "label"
        return toks + ([EOS_IDX] if eos else [])

    def __call__(self, examples: Sequence[TaskExample]) -> PromptBatch:
        if not examples:
            raise ValueError("Collator: empty batch")
        rows, seps, n_targets, n_units = [], [], [], []
        for e in examples:
            units = self.dictionary.encode(e.units, unk=True)
            lab = self.label_tokens(e.label)
            room = len(units)
            if self.max_units is not None:
                room = min(room, self.max_units)
            if self.max_len is not None:
                room = min(room, self.max_len - 2 - len(lab))
                if room < 0:
                    raise TaskError(f"uid {e.uid!r}: its label needs {len(lab)} tokens, more than "
                                    f"max_len {self.max_len} allows")
            if room < len(units):
                units = units[:room] if self.truncate == "right" else units[len(units) - room:]
            rows.append([BOS_IDX, *units, SEP_IDX, *lab])
            seps.append(1 + len(units))
            n_targets.append(len(lab))
            n_units.append(len(units))
        B, T = len(rows), max(len(r) for r in rows)
        tokens = torch.full((B, T), PAD_IDX, dtype=torch.long)
        targets = torch.full((B, T), PAD_IDX, dtype=torch.long)
        for b, r in enumerate(rows):
            tokens[b, :len(r)] = torch.tensor(r, dtype=torch.long)
            s, k = seps[b], n_targets[b]
            if k:  # positions s .. s+k-1 predict the label tokens at s+1 .. s+k
                targets[b, s:s + k] = tokens[b, s + 1:s + 1 + k]
                if self.loss_positions == "sep_label_eos":  # the last unit (or the BOS) predicts <sep>
                    targets[b, s - 1] = SEP_IDX
        lengths = torch.tensor([len(r) for r in rows])
        padding_mask = torch.arange(T)[None, :] >= lengths[:, None]
        if self.spec.kind == "classification" and self.with_labels:
            class_ids = torch.tensor([self.spec.class_index(e.label) for e in examples], dtype=torch.long)
        else:
            class_ids = torch.full((B,), -1, dtype=torch.long)
        return PromptBatch(tokens=tokens, padding_mask=padding_mask, sep_pos=torch.tensor(seps),
                           targets=targets, label_mask=targets != PAD_IDX, class_ids=class_ids,
                           input_lengths=torch.tensor(n_units), uids=[e.uid for e in examples],
                           labels=[e.label for e in examples])

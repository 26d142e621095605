"""Slot filling (SF): tagged transcripts as symbol sequences, and SUPERB's two SF metrics.

A clip's label is its tagged transcript (:mod:`spkit.data.snips`): ``ADD B-artist MADONNA E-artist TO
B-playlist CHILL MIX E-playlist``. Two symbol sequences are made from it:

* :func:`tagged_symbols` with ``slots_only=True``: what the prompted uLM generates, the slot types and their
  values only: ``B-artist M A D O N N A <E> B-playlist C H I L L | M I X <E>`` (``B-<type>`` opens a slot,
  the one close symbol ``<E>`` ends the open slot, ``|`` is a space);
* the full sequence (``slots_only=False``): every word, as SUPERB's CTC target (its ``character-slot``
  tokenizer): ``A D D | B-artist M A D O N N A <E> | T O | B-playlist ...``.

:func:`symbols_to_tagged` turns either back into a tagged string (``<E>`` writes ``E-<type>`` of the slot it
closes; a ``<E>`` with no open slot is dropped; a slot never closed stays unclosed and, as in SUPERB, does
not count).

Metrics, as s3prl computes them (``downstream/ctc/metric.py``): slots are read from a tagged string with
the pattern ``B-<type> <value> E-<type>`` (non-greedy, after collapsing runs of spaces); a hypothesis'
values lose any tags nested inside them.

* :func:`slot_type_f1`: per utterance, F1 between the *sets* of slot types of hypothesis and reference
  (1 when both have none, 0 when exactly one has none), averaged over utterances. Higher is better.
* :func:`slot_value_cer`: for every reference slot value, the hypothesis value of the same type with the
  lowest CER (the empty string when the hypothesis lacks that type; the first of equal ones); the total
  character edit distance over the total reference value length (spaces count). Lower is better.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torchaudio.functional import edit_distance

CLOSE = "<E>"
"""The symbol that ends the open slot."""
WORD_BOUNDARY = "|"
_TAG_RE = re.compile(r"^(?P<edge>[BE])-(?P<type>\S+)$")
_SPAN_RE = re.compile(r"B-(\S+) (.+?) E-\1")
_NESTED_B = re.compile(r"B-(\S+) ")
_NESTED_E = re.compile(r" E-(\S+)")


def tagged_symbols(tagged: str, slots_only: bool = False) -> list[str]:
    """The symbol sequence of a tagged transcript (see the module docstring)."""
    out: list[str] = []
    after_word = False
    open_slot = False
    for tok in tagged.split():
        m = _TAG_RE.match(tok)
        if m is not None and m.group("edge") == "B":
            if after_word and not slots_only:
                out.append(WORD_BOUNDARY)
            out.append(tok)
            open_slot, after_word = True, False
        elif m is not None:
            out.append(CLOSE)
            open_slot, after_word = False, not slots_only
        else:
            if slots_only and not open_slot:
                continue
            if after_word:
                out.append(WORD_BOUNDARY)
            out.extend(tok)
            after_word = True
    return out


def symbols_to_tagged(symbols: Sequence[str]) -> str:
    """Symbols back to a tagged string (single spaces; see the module docstring for ``<E>``)."""
    parts: list[str] = []
    open_type: str | None = None
    for s in symbols:
        if s == CLOSE:
            if open_type is not None:
                parts.append(f" E-{open_type} ")
                open_type = None
        elif s.startswith("B-") and len(s) > 2:
            parts.append(f" {s} ")
            open_type = s[2:]
        elif s == WORD_BOUNDARY:
            parts.append(" ")
        else:
            parts.append(s)
    return " ".join("".join(parts).split())


def symbol_set(tagged_labels: Sequence[str]) -> list[str]:
    """Every symbol of these tagged transcripts' full sequences: the ``B-<type>`` symbols (sorted), ``<E>``,
    ``|`` and the characters (sorted). Slot types and characters are taken from the labels given (pass the
    training split's)."""
    types: set[str] = set()
    chars: set[str] = set()
    for lab in tagged_labels:
        for s in tagged_symbols(lab):
            if s.startswith("B-") and len(s) > 2:
                types.add(s)
            elif s not in (CLOSE, WORD_BOUNDARY):
                chars.add(s)
    return [*sorted(types), CLOSE, WORD_BOUNDARY, *sorted(chars)]


def slot_dict(tagged: str, clean: bool = False) -> dict[str, list[str]]:
    """``{type: [values...]}`` as SUPERB reads a tagged string (``clean``: drop tags nested in values, as it
    does for hypotheses)."""
    out: dict[str, list[str]] = {}
    for kind, value in _SPAN_RE.findall(re.sub(r" +", " ", tagged)):
        if clean:
            value = _NESTED_E.sub("", _NESTED_B.sub("", value))
        out.setdefault(kind, []).append(value)
    return out


def slot_list(tagged: str) -> list[tuple[str, str]]:
    """The ``(type, value)`` slots of a tagged string in order, as SUPERB reads them (nested tags cleaned)."""
    return [(kind, _NESTED_E.sub("", _NESTED_B.sub("", value)))
            for kind, value in _SPAN_RE.findall(re.sub(r" +", " ", tagged))]


def slot_type_f1(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """SUPERB's slot-type F1 (a fraction in [0, 1]; see the module docstring)."""
    if len(hyps) != len(refs) or not refs:
        raise ValueError(f"slot_type_f1: {len(hyps)} hypotheses for {len(refs)} references")
    scores = []
    for h, r in zip(hyps, refs):
        hyp, ref = set(slot_dict(h, clean=True)), set(slot_dict(r))
        if not hyp and not ref:
            scores.append(1.0)
        elif not hyp or not ref:
            scores.append(0.0)
        else:
            p, rec = len(hyp & ref) / len(hyp), len(hyp & ref) / len(ref)
            scores.append(2 * p * rec / (p + rec) if p + rec > 0 else 0.0)
    return sum(scores) / len(scores)


def _cer(hyp: str, ref: str) -> float:
    return edit_distance(ref, hyp) / len(ref) if ref else float(len(hyp) > 0)


def slot_value_cer(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """SUPERB's slot-value CER (a fraction, lower is better; see the module docstring). NaN when the
    references hold no slot at all (there is nothing to score)."""
    if len(hyps) != len(refs) or not refs:
        raise ValueError(f"slot_value_cer: {len(hyps)} hypotheses for {len(refs)} references")
    errors = total = 0
    for h, r in zip(hyps, refs):
        hyp = slot_dict(h, clean=True)
        for kind, values in slot_dict(r).items():
            for ref_v in values:
                best = ""
                if kind in hyp:
                    best_cer = 100.0  # s3prl starts its minimum at 100
                    for hyp_v in hyp[kind]:
                        c = _cer(hyp_v, ref_v)
                        if c < best_cer:
                            best_cer, best = c, hyp_v
                errors += edit_distance(ref_v, best)
                total += len(ref_v)
    return errors / total if total else float("nan")


def slot_metrics(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """``{"slot_type_f1", "slot_value_cer"}`` of tagged hypotheses against tagged references."""
    return {"slot_type_f1": slot_type_f1(hyps, refs), "slot_value_cer": slot_value_cer(hyps, refs)}

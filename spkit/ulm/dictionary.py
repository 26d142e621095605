"""fairseq ``dict.txt`` for unit LMs: unit id strings <-> token indices.

Token indices: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, then one index per ``dict.txt`` line in
file order (fairseq sorts lines by count), so the token index is 4 + line number, *not* the unit id.
``fairseq-preprocess`` pads the vocabulary to a multiple of 8 with ``madeupwordNNNN 0`` lines, which are
part of ``dict.txt`` and of the embedding matrix.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from spkit.errors import UserError
from spkit.io import write_text

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
BOS_IDX, PAD_IDX, EOS_IDX, UNK_IDX = 0, 1, 2, 3
MADEUP = "madeupword"


class VocabMismatchError(UserError, ValueError):
    """A checkpoint's embedding size does not match the dictionary it is used with."""


class UnitDictionary:
    """The token vocabulary of a unit LM (fairseq ``Dictionary`` layout, re-implemented).

    Attributes:
        symbols: all tokens, specials first (index = position).
        counts: one count per symbol (0 for specials' placeholders and madeupwords).
    """

    def __init__(self, units: Sequence[str], counts: Sequence[int] | None = None):
        """``units``: the dict.txt tokens in file order (madeupwords included if present)."""
        units = [str(u) for u in units]
        dup = [u for u, c in Counter(units).items() if c > 1]
        if dup:
            raise ValueError(f"UnitDictionary: duplicate tokens {dup[:5]}")
        clash = set(units) & set(SPECIALS)
        if clash:
            raise ValueError(f"UnitDictionary: special tokens {sorted(clash)} cannot be units")
        self.symbols: list[str] = [*SPECIALS, *units]
        self.counts: list[int] = [1, 1, 1, 1, *(counts if counts is not None else [0] * len(units))]
        if len(self.counts) != len(self.symbols):
            raise ValueError("UnitDictionary: units and counts differ in length")
        self._index = {s: i for i, s in enumerate(self.symbols)}

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_sequences(
        cls, sequences: Iterable[Sequence[str | int]], pad_to_multiple: int = 8
    ) -> UnitDictionary:
        """Count units over ``sequences`` and order them like fairseq-preprocess (count descending;
        ties broken by unit id, numerically when the ids are numbers), then pad the vocabulary."""
        counter: Counter[str] = Counter()
        for seq in sequences:
            counter.update(str(u) for u in seq)

        def tie(u: str) -> tuple:
            return (0, int(u), "") if u.lstrip("-").isdigit() else (1, 0, u)

        ordered = sorted(counter.items(), key=lambda kv: (-kv[1], tie(kv[0])))
        d = cls([u for u, _ in ordered], [c for _, c in ordered])
        d.pad_to_multiple(pad_to_multiple)
        return d

    @classmethod
    def from_units(cls, units: Iterable[str | int], pad_to_multiple: int = 8) -> UnitDictionary:
        """A dictionary with ``units`` in the given order (e.g. ``range(100)`` for K=100), padded."""
        d = cls([str(u) for u in units])
        d.pad_to_multiple(pad_to_multiple)
        return d

    def pad_to_multiple(self, multiple: int = 8) -> None:
        """Append ``madeupwordNNNN`` tokens (count 0) until ``len(self)`` is a multiple of ``multiple``."""
        i = 0
        while multiple > 1 and len(self.symbols) % multiple:
            name = f"{MADEUP}{i:04d}"
            if name not in self._index:
                self._index[name] = len(self.symbols)
                self.symbols.append(name)
                self.counts.append(0)
            i += 1

    @classmethod
    def load(cls, path: str | os.PathLike) -> UnitDictionary:
        """Read a fairseq ``dict.txt`` (``<token> <count>`` per line; a trailing ``#fairseq:overwrite``
        flag is accepted). Errors name the file and line."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such dictionary file") from None
        units, counts = [], []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            parts = line.rstrip().split(" ")
            if len(parts) == 3 and parts[2] == "#fairseq:overwrite":
                parts = parts[:2]
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{n}: expected '<token> <count>', got {line!r}")
            units.append(parts[0])
            counts.append(int(parts[1]))
        try:
            return cls(units, counts)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``dict.txt`` atomically (specials are implicit, as in fairseq)."""
        body = "".join(f"{s} {c}\n" for s, c in zip(self.symbols[4:], self.counts[4:]))
        return write_text(path, body)

    # -- mapping -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnitDictionary) and self.symbols == other.symbols

    def __repr__(self) -> str:
        return f"UnitDictionary({self.num_units} units, {len(self)} tokens)"

    @property
    def num_units(self) -> int:
        """Real unit tokens (specials and madeupwords excluded)."""
        return sum(1 for s in self.symbols[4:] if not s.startswith(MADEUP))

    @property
    def pad(self) -> int:
        return PAD_IDX

    @property
    def eos(self) -> int:
        return EOS_IDX

    def index(self, unit: str | int) -> int:
        """Token index of a unit id; KeyError naming the unit if it is not in the dictionary."""
        try:
            return self._index[str(unit)]
        except KeyError:
            raise KeyError(f"unit {unit!r} is not in the dictionary ({self.num_units} units)") from None

    def encode(self, units: Iterable[str | int], unk: bool = False) -> list[int]:
        """Unit ids -> token indices. Unknown units raise, or map to ``<unk>`` with ``unk=True``."""
        if unk:
            return [self._index.get(str(u), UNK_IDX) for u in units]
        return [self.index(u) for u in units]

    def decode(self, indices: Iterable[int], strip_specials: bool = True) -> list[str]:
        """Token indices -> unit id strings; specials (and madeupwords) dropped unless
        ``strip_specials=False``."""
        out = []
        for i in indices:
            i = int(i)
            if not 0 <= i < len(self.symbols):
                raise IndexError(f"token index {i} outside the dictionary (size {len(self)})")
            s = self.symbols[i]
            if strip_specials and (i < 4 or s.startswith(MADEUP)):
                continue
            out.append(s)
        return out

    def check_vocab(self, n_embed: int, dict_path: str | os.PathLike, checkpoint: str | os.PathLike) -> None:
        """Raise :class:`VocabMismatchError` naming both files and sizes unless ``n_embed == len(self)``."""
        if n_embed != len(self):
            raise VocabMismatchError(
                f"vocabulary mismatch: {checkpoint} has an embedding of {n_embed} tokens but {dict_path} "
                f"defines {len(self)} (4 specials + {len(self) - 4} lines); use the dict.txt the model was "
                "trained with"
            )


def check_unit_vocabulary(n_clusters: int, kmeans_path: str | os.PathLike, dictionary: UnitDictionary,
                          dict_path: str | os.PathLike) -> None:
    """Raise :class:`VocabMismatchError` naming both files and both sizes unless the quantizer's K units
    are exactly the uLM's unit vocabulary (units ``0..K-1`` in ``dict.txt``, in any order)."""
    units = [s for s in dictionary.symbols[4:] if not s.startswith(MADEUP)]
    foreign = [u for u in units if not (u.isdigit() and int(u) < n_clusters)]
    if len(units) != n_clusters or foreign:
        extra = f" (and units outside 0..{n_clusters - 1}: {', '.join(foreign[:5])})" if foreign else ""
        raise VocabMismatchError(
            f"quantizer and uLM do not match: {kmeans_path} has K={n_clusters} units but {dict_path} holds "
            f"{len(units)} units{extra}; use the uLM trained on this quantizer's units")

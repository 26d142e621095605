"""Verbalizers: label atoms <-> unit-token sequences of the frozen uLM.

* ``frequency`` (SpeechPrompt v1): the i-th most frequent atom in the training labels gets the i-th
  most frequent unit token in the training inputs (ties: atom order of the task, token index).
* ``random``: a seeded, collision-free assignment (two atoms never share a token sequence; SpeechPrompt's
  own random verbalizer could map two labels onto one unit).
* ``learnable`` (SpeechPrompt v2's linear verbalizer): a trainable linear map without bias from the frozen
  LM's next-token logits (V) at the separator position to class scores (C), PyTorch's default
  initialisation (seeded). v2 maps to C + 4 outputs (the 4 specials as extra classes) and applies dropout
  0.1 to the scores; here the C class scores are all there is (a prediction is always a class).
* ``learnable_freqinit`` (a variant): the same map with a bias, initialised to pick the frequency
  verbalizer's token of each class (weight 1 at that token, 0 elsewhere), so training starts from v1's
  choice.

Multi-token codes: when there are more atoms than usable unit tokens U (ASR characters on a small unit
inventory, or many classes), every atom gets a code of n tokens with n the smallest integer such that
``U**n >= atoms``; ``tokens_per_atom`` forces a length. All codes of a verbalizer have the same length, so
the code set is prefix-free and a token string splits back into atoms unambiguously. Usable tokens are the
dictionary's unit tokens (specials and madeupword padding excluded).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spkit.prompt.spec import TaskError, TaskExample, TaskSpec
from spkit.ulm.dictionary import MADEUP, UnitDictionary

KINDS: tuple[str, ...] = ("frequency", "random", "learnable", "learnable_freqinit")
LEARNABLE: tuple[str, ...] = ("learnable", "learnable_freqinit")


def usable_tokens(dictionary: UnitDictionary) -> list[int]:
    """Token indices of real units (no specials, no madeupwords), in dictionary order."""
    return [i for i, s in enumerate(dictionary.symbols) if i >= 4 and not s.startswith(MADEUP)]


def code_length(n_atoms: int, n_tokens: int) -> int:
    """Smallest n with ``n_tokens ** n >= n_atoms``."""
    if n_tokens < 1:
        raise TaskError("the dictionary has no unit tokens to verbalize labels with")
    if n_tokens == 1 and n_atoms > 1:
        raise TaskError(f"{n_atoms} labels cannot be verbalized with a single unit token")
    n, cap = 1, n_tokens
    while cap < n_atoms:
        n, cap = n + 1, cap * n_tokens
    return n


def _code(i: int, n: int, alphabet: Sequence[int]) -> tuple[int, ...]:
    """The i-th n-token code over ``alphabet`` in lexicographic order (base-|alphabet| digits of i)."""
    U, digits = len(alphabet), []
    for _ in range(n):
        i, r = divmod(i, U)
        digits.append(alphabet[r])
    return tuple(reversed(digits))


class Verbalizer(nn.Module):
    """Maps atoms to fixed-length token codes; the learnable kind adds a (V -> C) linear head.

    Attributes:
        kind: one of :data:`KINDS`.
        atoms: the atoms in the task's order (:meth:`TaskSpec.all_atoms`).
        codes: one token-index tuple per atom, all of length :attr:`code_len`.
        head: learnable kinds only: ``nn.Linear(vocab_size, num_classes)`` (bias only for
            ``learnable_freqinit``).
    """

    def __init__(self, kind: str, atoms: Sequence[str], codes: Sequence[Sequence[int]],
                 vocab_size: int, num_classes: int | None = None, seed: int | None = None):
        super().__init__()
        if kind not in KINDS:
            raise TaskError(f"unknown verbalizer {kind!r}; expected one of {', '.join(KINDS)}")
        if len(atoms) != len(codes) or not atoms:
            raise TaskError(f"verbalizer: {len(atoms)} atoms but {len(codes)} codes")
        codes = [tuple(int(t) for t in c) for c in codes]
        lengths = {len(c) for c in codes}
        if len(lengths) != 1 or 0 in lengths:
            raise TaskError(f"verbalizer: codes must all have one non-zero length, got {sorted(lengths)}")
        if len(set(codes)) != len(codes):
            dup = next(c for c, k in Counter(codes).items() if k > 1)
            raise TaskError(f"verbalizer: two atoms share the token sequence {dup}")
        if any(not 0 <= t < vocab_size for c in codes for t in c):
            raise TaskError(f"verbalizer: a code uses a token outside the vocabulary (size {vocab_size})")
        self.kind, self.atoms, self.codes = kind, list(atoms), codes
        self.vocab_size, self.seed = int(vocab_size), seed
        self._by_atom = {a: c for a, c in zip(self.atoms, self.codes)}
        self._by_code = {c: a for a, c in zip(self.atoms, self.codes)}
        self.head: nn.Linear | None = None
        if kind in LEARNABLE:
            if num_classes is None:
                raise TaskError("a learnable verbalizer needs num_classes")
            with torch.random.fork_rng(devices=[]):  # seeded default init
                torch.manual_seed(seed or 0)
                self.head = nn.Linear(self.vocab_size, int(num_classes), bias=kind == "learnable_freqinit")
            if kind == "learnable_freqinit" and self.code_len == 1 and len(self.codes) == num_classes:
                with torch.no_grad():  # start from the frequency choice: class c reads its token's logit
                    self.head.weight.zero_()
                    self.head.bias.zero_()
                    for c, (tok,) in enumerate(self.codes):
                        self.head.weight[c, tok] = 1.0

    @property
    def code_len(self) -> int:
        """Tokens per atom."""
        return len(self.codes[0])

    def encode_atoms(self, atoms: Sequence[str]) -> list[int]:
        """Atoms -> the concatenation of their codes; TaskError for an atom without a code."""
        out: list[int] = []
        for a in atoms:
            try:
                out.extend(self._by_atom[a])
            except KeyError:
                raise TaskError(f"label atom {a!r} does not fit the verbalizer ({len(self.atoms)} atoms, "
                                f"e.g. {self.atoms[:8]})") from None
        return out

    def decode_tokens(self, tokens: Sequence[int]) -> list[str]:
        """Token indices -> atoms, ``code_len`` tokens at a time; stops at ``</s>`` (2); chunks that are no
        code (and a trailing incomplete chunk) are dropped."""
        toks = [int(t) for t in tokens]
        if 2 in toks:
            toks = toks[:toks.index(2)]
        n = self.code_len
        return [self._by_code[tuple(toks[i:i + n])] for i in range(0, len(toks) - n + 1, n)
                if tuple(toks[i:i + n]) in self._by_code]

    def label_sequences(self, spec: TaskSpec) -> Tensor:
        """(C, k) long: the token sequence of every class of a classification task, in label order."""
        if spec.kind != "classification":
            raise TaskError(f"task {spec.name!r} is a sequence task; it has no fixed label sequences")
        return torch.tensor([self.encode_atoms(spec.atoms(lb)) for lb in spec.labels], dtype=torch.long)

    def allowed_tokens(self) -> list[int]:
        """Every token any code uses, sorted (what constrained decoding may emit besides ``</s>``)."""
        return sorted({t for c in self.codes for t in c})

    def num_trainable(self) -> int:
        """Trainable parameters (the learnable head; 0 otherwise)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def fresh(self, seed: int) -> Verbalizer:
        """A copy whose learnable head is initialised anew from ``seed`` (``self`` is untouched); ``self``
        for kinds with nothing to train. A head trains in place, so a training run takes a fresh one: a
        verbalizer shared by runs (one cached per task) would carry one run's training into the next."""
        if self.head is None:
            return self
        v = Verbalizer(self.kind, self.atoms, self.codes, self.vocab_size, self.head.out_features, seed)
        return v.to(self.head.weight.device)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (strings, ints, tensors) for the prompt file."""
        d: dict[str, Any] = {"kind": self.kind, "atoms": list(self.atoms),
                             "codes": [list(c) for c in self.codes], "vocab_size": self.vocab_size,
                             "seed": self.seed}
        if self.head is not None:
            d["num_classes"] = self.head.out_features
            d["head"] = {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verbalizer:
        """Inverse of :meth:`to_dict`; the learnable head loads strictly."""
        v = cls(d["kind"], d["atoms"], d["codes"], d["vocab_size"], d.get("num_classes"), d.get("seed"))
        if v.head is not None:
            if "head" not in d:
                raise TaskError("learnable verbalizer without its 'head' weights")
            v.head.load_state_dict(d["head"], strict=True)
        return v


def build_verbalizer(kind: str, spec: TaskSpec, dictionary: UnitDictionary,
                     train_examples: Sequence[TaskExample], *, seed: int = 0,
                     tokens_per_atom: int | None = None) -> Verbalizer:
    """Build a verbalizer for ``spec`` on ``dictionary``'s unit tokens.

    Args:
        kind: one of :data:`KINDS` (learnable kinds: classification only; their code table is the
            frequency one, which ``learnable_freqinit`` uses to initialise its head).
        train_examples: the training split: unit frequencies and atom frequencies come from it.
        seed: the random verbalizer's seed (same seed -> same codes).
        tokens_per_atom: force codes of this many tokens (default: the fewest that fit).
    Raises:
        TaskError when the atoms cannot fit (e.g. ``tokens_per_atom`` too small for the atom count).
    """
    if kind not in KINDS:
        raise TaskError(f"unknown verbalizer {kind!r}; expected one of {', '.join(KINDS)}")
    if kind in LEARNABLE and spec.kind != "classification":
        raise TaskError(f"the learnable verbalizer is for classification; task {spec.name!r} is a "
                        "sequence task")
    atoms = spec.all_atoms()
    alphabet = usable_tokens(dictionary)
    need = code_length(len(atoms), len(alphabet))
    n = need if tokens_per_atom is None else int(tokens_per_atom)
    if n < need:
        raise TaskError(f"{len(atoms)} label atoms do not fit {n}-token codes over {len(alphabet)} unit "
                        f"tokens (need at least {need} tokens per atom)")
    if kind == "random":
        rng = random.Random(seed)
        picks = rng.sample(range(len(alphabet) ** n), len(atoms))  # distinct code numbers: no collision
        codes = [_code(i, n, alphabet) for i in picks]
    else:
        unit_counts: Counter[int] = Counter()
        for e in train_examples:
            unit_counts.update(dictionary.encode(e.units, unk=True))
        ranked = sorted(alphabet, key=lambda t: (-unit_counts.get(t, 0), t))
        atom_counts: Counter[str] = Counter()
        for e in train_examples:
            atom_counts.update(spec.atoms(e.label))
        order = {a: i for i, a in enumerate(atoms)}
        by_freq = sorted(atoms, key=lambda a: (-atom_counts.get(a, 0), order[a]))
        rank = {a: i for i, a in enumerate(by_freq)}
        codes = [_code(rank[a], n, ranked) for a in atoms]
    return Verbalizer(kind, atoms, codes, len(dictionary),
                      spec.num_classes if kind in LEARNABLE else None,
                      seed if kind != "frequency" else None)

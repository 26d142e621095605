"""Oracle units: the synthesizer's phone label per 20 ms frame, deduplicated. A topline, not a speech system.

spkit's synthesized corpora know every phone's timing (``<root>/spkit/alignments.jsonl``,
:mod:`spkit.data.alignments`). Oracle units replace "SSL features -> k-means" by that knowledge: the phone
label of each frame on the HuBERT/GSLM grid, mapped to a unit id by a :class:`PhoneInventory`, then repeats
collapsed with their durations, exactly as k-means units are. What a run then measures with them (the same
uLM recipe, prompts and baselines) is how far prompting gets when the units are as good as units can be, so
the gap between an oracle run and a speech run splits into what the units lose and what prompting loses.

**The frame grid** is PNMI's (:func:`spkit.units.metrics.frame_pairs`): a clip of ``N`` samples at 16 kHz
has ``num_frames(N) = floor((N - 400) / 320) + 1`` frames, as many as HuBERT units, and frame ``i`` takes
the label of the phone interval holding its centre ``(i + 0.5) / 50`` s, else silence
(:func:`spkit.data.alignments.frame_labels`). The phone PNMI of oracle units is therefore 1 (less only where
unseen phones share their unit).

**Unit ids** (:class:`PhoneInventory`): ``0`` silence (frames outside every phone, and espeak's own ``sil``
pauses), ``1`` reserved for a phone the inventory has not seen (every such phone maps to it), ``2...`` the
inventory's phones in sorted order. The inventory is built from *training* clips only:
:meth:`PhoneInventory.build` refuses a clip of any other split, so a phone heard only in validation or test
never gets a unit of its own.

**Clips without phones.** Speech Commands' ``_silence_`` clips are windows cut from the corpus's background
noise files (``meta["offset_s"]``), which carry no alignment and no speech: every frame is silence. Any other
clip without an alignment is an :class:`OracleUnitsError` naming its file.

:func:`quantize_oracle` writes a split's units in the kit's unit-file format (``<split>.txt``/``.jsonl``/
``.errors.jsonl``/``.meta.json``, :mod:`spkit.units.unit_files`), so the uLM trainer, prompting and the
analyses read them unchanged; :func:`save_oracle_unit_model` writes ``RUN/units/unit_model.json`` with
``kind: "oracle_phones"``, for which :meth:`spkit.units.encoder.SpeechEncoder.from_run` returns an
:class:`OracleEncoder`: it encodes clips whose alignment it can find (a file of a synthesized corpus) and
refuses raw audio (an upload, a recording) with a message saying why.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from spkit.audio import AudioError, audio_info
from spkit.data.alignments import ALIGNMENTS_FILE, SILENCE, frame_labels, load_alignments
from spkit.data.base import DataError, Utterance
from spkit.features.base import num_frames
from spkit.features.factory import load_extractor
from spkit.io import atomic_path, read_json, write_json
from spkit.layout import RunLayout
from spkit.units.encoded import FRAME_RATE, SAMPLE_RATE, EncodedSpeech, encoded_speech
from spkit.units.unit_files import (
    check_name,
    check_utterances,
    format_line,
    json_default,
    output_paths,
    unit_record,
)

ORACLE_KIND = "oracle_phones"
"""``kind`` of an oracle run's ``unit_model.json`` and of results.json's ``units``."""

ORACLE_LABEL = "oracle topline (synthesizer phone labels, not a speech system)"
"""How an oracle run is labelled wherever its numbers appear (results.md, the report, notebooks)."""

INVENTORY_FORMAT = "spkit.oracle_inventory"
INVENTORY_FILE = "oracle_inventory.json"
"""The inventory's file name in ``RUN/units/``."""

SILENCE_UNIT = 0
UNSEEN_UNIT = 1
UNSEEN = "<unseen>"
SILENCE_LABELS = frozenset({SILENCE})  # frame_labels' label outside intervals, and espeak's own pause phone
LABELLING = "phone at the frame centre (i + 0.5) / 50 s, num_frames(samples) frames; v1"
"""What the ``extractor_fingerprint`` of oracle units stands for (the labelling rule, versioned)."""


class OracleUnitsError(DataError):
    """Oracle units cannot be made for a clip (no synthesizer alignment); the message names the file."""


# --------------------------------------------------------------------------------------------
# Frame labels of a clip
# --------------------------------------------------------------------------------------------

def _samples_at_16k(frames: int, rate: int) -> int:
    # torchaudio's resampler (spkit.audio.resample) returns ceil(frames * new / old) samples
    return frames if rate == SAMPLE_RATE else math.ceil(frames * SAMPLE_RATE / rate)


def clip_frames(utt: Utterance) -> int:
    """Frames (20 ms) of ``utt`` on the HuBERT grid, from the audio header (nothing is decoded).

    A window of a longer file (``meta["offset_s"]``) counts its window. Raises
    :class:`spkit.audio.AudioError` naming the file when its header is unreadable.
    """
    if "offset_s" in utt.meta:
        if "num_frames" in utt.meta and "sample_rate" in utt.meta:
            return num_frames(_samples_at_16k(int(utt.meta["num_frames"]), int(utt.meta["sample_rate"])))
        return num_frames(round(float(utt.meta["duration_s"]) * SAMPLE_RATE))
    info = audio_info(utt.path)
    return num_frames(_samples_at_16k(int(info.frames), int(info.samplerate)))


def is_noise_window(utt: Utterance) -> bool:
    """A Speech Commands ``_silence_`` clip: a window of a background-noise file, no speech in it."""
    return "offset_s" in utt.meta and "noise_file" in utt.meta


def clip_labels(utt: Utterance, n_frames: int | None = None) -> list[str]:
    """The phone label of every frame of ``utt`` (``sil`` outside phones), PNMI's grid and rule.

    Raises :class:`OracleUnitsError` naming the file when the clip has no synthesizer alignment (and is not a
    window of a background-noise file, which is all silence).
    """
    n = clip_frames(utt) if n_frames is None else int(n_frames)
    alignment = utt.meta.get("alignment")
    if alignment is None:
        if is_noise_window(utt):
            return [SILENCE] * n
        raise OracleUnitsError(
            f"{utt.path}: no synthesizer alignment for this clip ({utt.uid}); oracle units are the phone "
            f"labels of spkit's synthesized corpora (<root>/{ALIGNMENTS_FILE.as_posix()} lists each clip)")
    return frame_labels(alignment, n, frame_rate=FRAME_RATE, tier="phones")


# --------------------------------------------------------------------------------------------
# The phone inventory
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhoneInventory:
    """Phone label -> unit id: 0 silence, 1 unseen (reserved), 2... ``phones`` in order.

    Attributes:
        phones: the phones with a unit of their own, sorted (unit ``2 + i`` is ``phones[i]``).
        counts: frames of each label (silence included) in the clips it was built from.
        sources: where it was built from (corpus, split, clips), for the record.
    """

    phones: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        bad = sorted(set(self.phones) & (SILENCE_LABELS | {UNSEEN}))
        if bad or list(self.phones) != sorted(set(self.phones)):
            raise ValueError(f"phone inventory: phones must be sorted, unique and not {bad or 'reserved'}")
        object.__setattr__(self, "_index", {p: i + 2 for i, p in enumerate(self.phones)})

    # ---- building
    @classmethod
    def from_labels(cls, labels: Iterable[Sequence[str]], sources: Sequence[Mapping[str, Any]] = ()
                    ) -> PhoneInventory:
        """The inventory of every label in ``labels`` (one frame-label sequence per clip)."""
        counts: Counter[str] = Counter()
        for seq in labels:
            counts.update(seq)
        phones = tuple(sorted(p for p in counts if p not in SILENCE_LABELS))
        return cls(phones, dict(sorted(counts.items())), [dict(s) for s in sources])

    @classmethod
    def build(cls, utterances: Sequence[Utterance], progress: bool = False) -> PhoneInventory:
        """The inventory of the phones in ``utterances``' frames; every one must be a *training* clip.

        Raises :class:`ValueError` naming a clip of another split (no validation or test phone may get a
        unit), :class:`OracleUnitsError` for a clip without alignment, and :class:`DataError` when there
        is no clip at all.
        """
        if not utterances:
            raise DataError("phone inventory: no training clips to build it from")
        others = [u for u in utterances if u.split != "train"]
        if others:
            raise ValueError(f"phone inventory: built from training clips only, but {others[0].uid} "
                             f"({others[0].path}) is in the {others[0].split!r} split")
        by_root: Counter[str] = Counter(str(u.meta.get("alignments_file", "-")) for u in utterances)
        sources = [{"alignments": k, "clips": v} for k, v in sorted(by_root.items())]
        seqs = (clip_labels(u) for u in tqdm(utterances, desc="phone inventory", unit="clip",
                                             disable=not progress, leave=False))
        return cls.from_labels(seqs, [{"split": "train", **s} for s in sources])

    # ---- mapping
    @property
    def n_units(self) -> int:
        """K: silence, the unseen unit and one per phone."""
        return 2 + len(self.phones)

    @property
    def names(self) -> list[str]:
        """The label of every unit id (``names[u]``)."""
        return [SILENCE, UNSEEN, *self.phones]

    def unit(self, label: str) -> int:
        """The unit id of one frame label."""
        if label in SILENCE_LABELS:
            return SILENCE_UNIT
        return self._index.get(label, UNSEEN_UNIT)  # type: ignore[attr-defined]

    def units(self, labels: Sequence[str]) -> list[int]:
        return [self.unit(x) for x in labels]

    @property
    def fingerprint(self) -> str:
        """Identifies the mapping (what prompt files and results are keyed by)."""
        blob = json.dumps({"units": self.names, "silence": sorted(SILENCE_LABELS), "labelling": LABELLING})
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ---- file
    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, {"format": INVENTORY_FORMAT, "version": 1, "fingerprint": self.fingerprint,
                                 "units": self.names, "silence_unit": SILENCE_UNIT,
                                 "unseen_unit": UNSEEN_UNIT, "silence_labels": sorted(SILENCE_LABELS),
                                 "labelling": LABELLING, "frame_counts": self.counts,
                                 "sources": self.sources})

    @classmethod
    def load(cls, path: str | os.PathLike) -> PhoneInventory:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no oracle phone inventory (run notebook 01 with units=oracle)")
        d = read_json(path)
        if d.get("format") != INVENTORY_FORMAT:
            raise DataError(f"{path}: not an spkit oracle phone inventory (format {d.get('format')!r})")
        inv = cls(tuple(d["units"][2:]), dict(d.get("frame_counts", {})), list(d.get("sources", [])))
        if d.get("fingerprint") not in (None, inv.fingerprint):
            raise DataError(f"{path}: fingerprint {d['fingerprint']} does not match its units "
                            f"({inv.fingerprint})")
        return inv

    def summary(self) -> dict[str, Any]:
        """Size, reserved ids and sources (for reports and results.json)."""
        return {"n_units": self.n_units, "n_phones": len(self.phones), "silence_unit": SILENCE_UNIT,
                "unseen_unit": UNSEEN_UNIT, "fingerprint": self.fingerprint, "sources": self.sources}


# --------------------------------------------------------------------------------------------
# Unit files
# --------------------------------------------------------------------------------------------

def quantize_oracle(utterances: Sequence[Utterance], inventory: PhoneInventory, out_dir: str | os.PathLike,
                    *, name: str = "units", progress: bool = True) -> Path:
    """Write oracle units of ``utterances`` in the unit-file format of
    :func:`spkit.units.quantize.quantize_corpus` (``<name>.txt``: one unit per frame; ``<name>.jsonl``:
    deduplicated units with durations; errors; meta); returns the ``.txt`` path.

    A clip whose audio header cannot be read goes to ``<name>.errors.jsonl`` (as in quantization); a clip
    without alignment stops the job with an :class:`OracleUnitsError` naming its file (an oracle with holes
    would not be one). ``meta.json`` adds ``unseen_frames`` (frames mapped to the reserved unseen unit).
    """
    out_dir = Path(out_dir)
    check_name(name)
    todo = check_utterances(utterances, out_dir)
    paths = output_paths(out_dir, name)
    stats = {"n_ok": 0, "n_errors": 0, "n_cached": 0, "n_frames": 0, "unseen_frames": 0, "silence_frames": 0}
    unseen: Counter[str] = Counter()
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths["units"]) as t_units, atomic_path(paths["records"]) as t_rec, \
            atomic_path(paths["errors"]) as t_err, t_units.open("w", encoding="utf-8") as f_units, \
            t_rec.open("w", encoding="utf-8") as f_rec, t_err.open("w", encoding="utf-8") as f_err:
        for u in tqdm(todo, desc=f"oracle units {name}", unit="utt", disable=not progress):
            try:
                labels = clip_labels(u)
            except AudioError as e:
                f_err.write(json.dumps({"uid": u.uid, "path": str(u.path), "problem": e.problem},
                                       ensure_ascii=False) + "\n")
                stats["n_errors"] += 1
                continue
            seq = inventory.units(labels)
            unseen.update(x for x, y in zip(labels, seq) if y == UNSEEN_UNIT)
            f_units.write(format_line(u.uid, seq))
            f_rec.write(json.dumps(unit_record(u, seq), ensure_ascii=False, default=json_default) + "\n")
            stats["n_ok"] += 1
            stats["n_frames"] += len(seq)
            stats["silence_frames"] += sum(1 for y in seq if y == SILENCE_UNIT)
    stats["unseen_frames"] = sum(unseen.values())
    write_json(paths["meta"], {
        "name": name, "shard": [0, 1], "n_utterances": len(todo), **stats, "extract_seconds": 0.0,
        "seconds": round(time.perf_counter() - t0, 3), "units": ORACLE_KIND,
        "unseen_phones": dict(unseen.most_common()),
        "extractor": {"name": ORACLE_KIND, "dim": 0, "fingerprint": oracle_extractor_fingerprint(),
                      "layer": None},
        "kmeans": {"fingerprint": inventory.fingerprint, "n_clusters": inventory.n_units, "path": None},
        "frame_rate": FRAME_RATE})
    return paths["units"]


def oracle_extractor_fingerprint() -> str:
    """What stands for the "extractor" of oracle units: the labelling rule (:data:`LABELLING`)."""
    return f"{ORACLE_KIND}-" + hashlib.sha256(LABELLING.encode()).hexdigest()[:12]


def save_oracle_unit_model(run: str | os.PathLike, inventory: PhoneInventory,
                           ssl: Mapping[str, Any] | None) -> Path:
    """Write ``RUN/units/oracle_inventory.json`` and ``RUN/units/unit_model.json`` (``kind: oracle_phones``).

    ``ssl``: the frozen SSL model the ``downstream`` baseline reads (oracle units have no features):
    ``{"features", "checkpoint", "layer", "cmvn"}`` (e.g. spkit-base's tiny HuBERT), or None (no downstream
    baseline possible). Its extractor fingerprint is recorded and checked when it is loaded again.
    """
    layout = RunLayout.at(run)
    inv_path = inventory.save(layout.units / INVENTORY_FILE)
    ssl_rec = None
    if ssl is not None:
        ext = load_extractor(ssl["features"], checkpoint=ssl.get("checkpoint"), layer=ssl.get("layer"),
                             cmvn=bool(ssl.get("cmvn", False)))
        ssl_rec = {"features": ssl["features"], "checkpoint": ssl.get("checkpoint"),
                   "layer": ssl.get("layer"), "cmvn": bool(ssl.get("cmvn", False)),
                   "fingerprint": ext.fingerprint,
                   **({"source": ssl["source"]} if ssl.get("source") else {})}
    return write_json(layout.units / "unit_model.json", {
        "kind": ORACLE_KIND, "label": ORACLE_LABEL, "features": ORACLE_KIND, "checkpoint": None,
        "layer": None, "kmeans": None, "inventory": str(inv_path.relative_to(layout.root)),
        "n_clusters": inventory.n_units,
        "dim": 0, "cmvn": False, "frame_rate": FRAME_RATE, "labelling": LABELLING,
        "extractor_fingerprint": oracle_extractor_fingerprint(), "kmeans_fingerprint": inventory.fingerprint,
        "ssl": ssl_rec})


def unit_model_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """What results.json records as ``units`` from a run's ``unit_model.json``: the kind, K and where the
    units come from (``kind``: ``oracle_phones`` or ``ssl_kmeans``)."""
    if record.get("kind") == ORACLE_KIND:
        ssl = record.get("ssl") or {}
        return {"kind": ORACLE_KIND, "label": ORACLE_LABEL, "n_units": record["n_clusters"],
                "inventory": record.get("inventory"), "labelling": record.get("labelling"),
                "fingerprint": record.get("kmeans_fingerprint"),
                "downstream_features": ({k: ssl.get(k) for k in ("features", "checkpoint", "layer", "source")}
                                        if ssl else None)}
    return {"kind": "ssl_kmeans", "features": record.get("features"), "checkpoint": record.get("checkpoint"),
            "layer": record.get("layer"), "cmvn": record.get("cmvn"), "n_units": record.get("n_clusters"),
            "targets": record.get("targets"), "fingerprint": record.get("kmeans_fingerprint")}


# --------------------------------------------------------------------------------------------
# The encoder of an oracle run
# --------------------------------------------------------------------------------------------

class OracleEncoder:
    """Where a :class:`~spkit.units.encoder.SpeechEncoder` stands in an oracle run (``spkit predict``, the
    demo, the downstream baseline): clip -> oracle units, deduplicated, with durations.

    It needs the clip's *file*: :meth:`encode` takes ``path`` and finds the clip's alignment in the
    ``spkit/alignments.jsonl`` of a folder above it (a file of a synthesized corpus); audio alone (an upload,
    a recording, a clip synthesized on the fly) has no alignment and is refused with an
    :class:`OracleUnitsError` that says so. ``extractor`` is the frozen SSL model the downstream baseline
    reads (``ssl`` of ``unit_model.json``), loaded on first use.
    """

    kind = ORACLE_KIND
    layer = None

    def __init__(self, inventory: PhoneInventory, *, record: dict[str, Any] | None = None,
                 root: Path | None = None, deduplicate: bool = True, device: str | torch.device = "cpu"):
        self.inventory, self.deduplicate = inventory, deduplicate
        self.record = record
        self.root = root
        self.device = torch.device(device)
        self._extractor: Any = None
        self._alignments: dict[Path, dict[str, dict[str, Any]]] = {}

    @classmethod
    def from_record(cls, run: str | os.PathLike, record: dict[str, Any], *, device: str = "cpu",
                    deduplicate: bool = True) -> OracleEncoder:
        """An oracle run's encoder from its ``unit_model.json`` record; refuses an inventory that changed."""
        layout = RunLayout.at(run)
        inventory = PhoneInventory.load(layout.root / record["inventory"])
        if inventory.fingerprint != record["kmeans_fingerprint"]:
            raise DataError(f"{layout.units / 'unit_model.json'}: the phone inventory changed since the "
                            f"units were made ({inventory.fingerprint} != {record['kmeans_fingerprint']})")
        return cls(inventory, record=record, root=layout.root, deduplicate=deduplicate, device=device)

    # ---- what it is
    @property
    def vocab_size(self) -> int:
        return self.inventory.n_units

    @property
    def fingerprints(self) -> dict[str, str]:
        return {"extractor": oracle_extractor_fingerprint(), "kmeans": self.inventory.fingerprint}

    def __repr__(self) -> str:
        return f"OracleEncoder({ORACLE_LABEL}, K={self.vocab_size}, deduplicate={self.deduplicate})"

    @property
    def extractor(self) -> Any:
        """The frozen SSL model of the downstream baseline (``unit_model.json``'s ``ssl``)."""
        if self._extractor is None:
            ssl = (self.record or {}).get("ssl")
            if not ssl:
                raise DataError("oracle units have no features, and this run records no SSL model for the "
                                "downstream baseline (unit_model.json: ssl is null)")
            ext = load_extractor(ssl["features"], checkpoint=ssl.get("checkpoint"), layer=ssl.get("layer"),
                                 cmvn=bool(ssl.get("cmvn", False)), device=str(self.device))
            if ssl.get("fingerprint") and ext.fingerprint != ssl["fingerprint"]:
                raise DataError(f"{ssl.get('checkpoint')}: the SSL model's weights changed since the oracle "
                                f"run recorded it ({ext.fingerprint} != {ssl['fingerprint']})")
            self._extractor = ext
        return self._extractor

    # ---- clips
    def alignment_of(self, path: str | os.PathLike) -> dict[str, Any]:
        """The synthesizer's alignment record of the clip at ``path`` (searched in ``spkit/alignments.jsonl``
        of the folders above it); :class:`OracleUnitsError` naming the file when there is none."""
        path = Path(path).resolve()
        for folder in path.parents:
            file = folder / ALIGNMENTS_FILE
            if not file.is_file():
                continue
            if file not in self._alignments:
                self._alignments[file] = load_alignments(folder)
            rec = self._alignments[file].get(path.relative_to(folder).as_posix())
            if rec is not None:
                return rec
        raise OracleUnitsError(
            f"{path}: no synthesizer alignment for this clip. This run's units are an {ORACLE_LABEL}: they "
            "are made from the phone timings spkit's synthesizer wrote beside its corpora "
            "(spkit/alignments.jsonl), so only clips of those corpora can be encoded; uploaded, recorded or "
            "newly synthesized audio cannot")

    def frame_units(self, alignment: Mapping[str, Any], n_frames: int) -> list[int]:
        """One unit per frame from an alignment record (PNMI's frame grid and rule)."""
        return self.inventory.units(frame_labels(alignment, n_frames, frame_rate=FRAME_RATE, tier="phones"))

    def from_frame_units(self, frame_units: Any, features: Tensor | None = None) -> EncodedSpeech:
        return encoded_speech(frame_units, self.deduplicate, features)

    def encode(self, wave: Tensor | None = None, *, path: str | os.PathLike | None = None,
               with_features: bool = False) -> EncodedSpeech:
        """Oracle units of the clip at ``path`` (its frame count from ``wave`` when given, else from the
        file's header). Without ``path`` (raw audio) an :class:`OracleUnitsError` says why it cannot be
        done."""
        if with_features:
            raise OracleUnitsError(f"oracle units have no dense features ({ORACLE_LABEL})")
        if path is None:
            raise OracleUnitsError(
                f"this run's units are an {ORACLE_LABEL}: they come from the synthesizer's phone alignment "
                "of a corpus clip, which raw audio (an upload, a recording, a phrase synthesized now) does "
                "not have; pick a test clip of the run's corpora, or predict with a run made by a speech "
                "preset")
        alignment = self.alignment_of(path)
        if wave is not None:
            n = num_frames(int(torch.as_tensor(wave).reshape(-1).shape[0]))
        else:
            info = audio_info(path)
            n = num_frames(_samples_at_16k(int(info.frames), int(info.samplerate)))
        return self.from_frame_units(self.frame_units(alignment, n))

    __call__ = encode

"""Corpus -> discrete units, streamed one utterance at a time, cached, sharded, in GSLM's format.

For each utterance (sorted by uid): ``load_utterance`` (16 kHz) -> the
:class:`~spkit.units.encoder.SpeechEncoder`'s features ``(frames, dim)`` -> its k-means ``(frames,)``.
Utterances are encoded one at a time (or in batches of equal length: HuBERT is not padding-invariant, its
first GroupNorm sees the padding), so no split's features are ever held in memory. Outputs in ``out_dir``
(``<name>`` defaults to ``units``):

* ``<name>.txt``: GSLM's format, one line per utterance, ``uid|u1 u2 ...``, units per 20 ms frame
  (not deduplicated). Names are written as they are (GSLM's own ``rstrip('.'+ext)`` mangles names
  ending in the extension's letters; spkit does not strip anything).
* ``<name>.jsonl``: one JSON object per utterance: ``uid, path, split, speaker, label, text, units``
  (deduplicated), ``durations`` (frames per deduplicated unit), ``n_frames``.
* ``<name>.errors.jsonl``: one ``{"uid", "path", "problem"}`` per clip that could not be read; the
  other utterances are still written.
* ``<name>.meta.json``: extractor and k-means fingerprints, counts, timings; written last, so its
  presence marks a finished job (or shard).

With ``shard=(i, n)`` the job takes the i-th contiguous slice (0-based) of the sorted utterance list
and writes ``<name>.shard-<i>-of-<n>.*``; :func:`merge_shards` concatenates the slices into the same
files an unsharded run writes, byte for byte. Every output is written atomically.

Per-utterance units are cached under ``cache_dir`` keyed by the audio file's identity (resolved path,
size and mtime, or a content hash), the extractor's fingerprint and layer, and the k-means fingerprint:
a rerun with the same inputs extracts nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spkit.audio import AudioError
from spkit.data.base import Utterance
from spkit.data.corpus import load_utterance
from spkit.io import atomic_path, read_json, write_json
from spkit.units.encoded import FRAME_RATE
from spkit.units.encoder import SpeechEncoder
from spkit.units.unit_files import (
    check_name,
    check_utterances,
    format_line,
    json_default,
    output_paths,
    unit_record,
)
from spkit.units.unit_files import read_records as read_records  # re-exported: read unit files from here too
from spkit.units.unit_files import read_units as read_units

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Sharding
# --------------------------------------------------------------------------------------------

def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"i/n"`` (0-based i) -> ``(i, n)``; ``"auto"`` reads SLURM array or torchrun variables.

    ``auto``: ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` (array starting at 0), else
    ``RANK``/``WORLD_SIZE`` (torchrun), else ``(0, 1)``.
    """
    if spec is None:
        return (0, 1)
    if isinstance(spec, tuple):
        i, n = spec
    elif spec == "auto":
        env = os.environ
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            offset = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            i, n = int(env["SLURM_ARRAY_TASK_ID"]) - offset, int(env["SLURM_ARRAY_TASK_COUNT"])
        elif "RANK" in env and "WORLD_SIZE" in env:
            i, n = int(env["RANK"]), int(env["WORLD_SIZE"])
        else:
            i, n = 0, 1
    else:
        try:
            a, b = spec.split("/")
            i, n = int(a), int(b)
        except ValueError:
            raise ValueError(f"--shard must look like i/n (0-based, e.g. 0/4) or 'auto', got {spec!r}"
                             ) from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: need n >= 1 and 0 <= i < n")
    return (i, n)


def shard_slice(items: Sequence[Any], shard: tuple[int, int]) -> list[Any]:
    """The i-th of n contiguous, near-equal slices of ``items`` (sizes differ by at most one)."""
    i, n = shard
    return list(items[len(items) * i // n: len(items) * (i + 1) // n])


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------

def file_identity(path: Path, identity: str = "stat") -> dict[str, Any]:
    """What identifies an audio file for the cache: resolved path + size + mtime, or its content hash.

    ``identity="content"`` survives moving the corpus (e.g. to a cluster), at the cost of reading
    each file once per run. Raises ``OSError`` for a missing file.
    """
    st = path.stat()
    if identity == "stat":
        return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if identity == "content":
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return {"sha256": h.hexdigest(), "size": st.st_size}
    raise ValueError(f"unknown cache identity {identity!r}; choose 'stat' or 'content'")


def cache_key(audio_id: dict[str, Any], extractor_fp: str, layer: Any, kmeans_fp: str) -> str:
    """sha256 of the audio identity, extractor fingerprint and layer, and k-means fingerprint."""
    blob = json.dumps({"audio": audio_id, "extractor": extractor_fp, "layer": layer, "kmeans": kmeans_fp,
                       "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.npy"


def _cache_read(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # a truncated/corrupt entry is a miss, not a failure
        log.warning("%s: unreadable cache entry (%s); recomputing", path, e)
        return None
    return arr.astype(np.int64) if arr.ndim == 1 else None


def _cache_write(path: Path, units: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, units.astype(np.int32 if units.size and units.max() > 32767 else np.int16))
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------

def quantize_corpus(utterances: Sequence[Utterance], encoder: SpeechEncoder, out_dir: str | os.PathLike, *,
                    shard: tuple[int, int] | str | None = (0, 1), cache_dir: str | os.PathLike | None = None,
                    name: str = "units", identity: str = "stat", batch_size: int = 1,
                    progress: bool = True) -> Path:
    """Quantize ``utterances`` to units; returns the path of the ``name|u1 u2 ...`` file written.

    Args:
        utterances: the corpus (any splits); sorted by uid before sharding, uids must be unique.
        encoder: the :class:`~spkit.units.encoder.SpeechEncoder` (extractor + k-means; k-means runs on its
            ``device``); the extractor's ``fingerprint`` and ``layer`` and the k-means fingerprint key the
            cache.
        out_dir: where the files listed in the module docstring go.
        shard: ``(i, n)`` or ``"i/n"`` (0-based) or ``"auto"``: this job does the i-th of n contiguous
            slices; merge with :func:`merge_shards`.
        cache_dir: per-utterance unit cache (None: no cache).
        name: file stem of the outputs (e.g. the split name: ``train``).
        identity: ``"stat"`` (path+size+mtime) or ``"content"`` (sha256) audio identity for the cache.
        batch_size: >1 encodes clips together (:meth:`SpeechEncoder.features_batch`: clips of exactly
            equal length for HuBERT, any lengths for the padding-invariant tiny HuBERT; the same units).
        progress: show a tqdm bar.
    """
    out_dir = Path(out_dir)
    shard = parse_shard(shard)
    check_name(name)
    extractor, kmeans = encoder.extractor, encoder.kmeans
    todo = shard_slice(check_utterances(utterances, out_dir), shard)
    paths = output_paths(out_dir, name, shard)
    cache = Path(cache_dir) if cache_dir is not None else None
    ext_fp, layer, km_fp = str(extractor.fingerprint), getattr(extractor, "layer", None), kmeans.fingerprint

    stats = {"n_ok": 0, "n_errors": 0, "n_cached": 0, "n_frames": 0, "extract_seconds": 0.0}
    batch_size = max(1, int(batch_size))
    window = 4 * batch_size if batch_size > 1 and hasattr(extractor, "extract_batch") else 1

    def lookup(u: Utterance) -> tuple[Path | None, np.ndarray | None]:
        """The cache entry of ``u`` and its units when cached."""
        if cache is None:
            return None, None
        try:
            audio_id = file_identity(Path(u.path), identity)
            if "offset_s" in u.meta:  # a window of a longer file (Speech Commands' _silence_)
                audio_id["segment"] = [u.meta["offset_s"], u.meta.get("duration_s")]
            key = cache_key(audio_id, ext_fp, layer, km_fp)
        except OSError as e:
            raise AudioError(u.path, f"cannot stat or read ({e.strerror or e})") from e
        entry = _cache_file(cache, key)
        return entry, _cache_read(entry)

    def prepare(chunk: list[Utterance]) -> list[tuple[Utterance, Any, Any]]:
        """Per utterance ``(u, cache entry, units | wave | AudioError)``; runs in a reader thread."""
        out: list[tuple[Utterance, Any, Any]] = []
        for u in chunk:
            try:
                entry, units = lookup(u)
                out.append((u, entry, units if units is not None else load_utterance(u)))
            except AudioError as e:
                out.append((u, None, e))
        return out

    def encode(waves: list[torch.Tensor]) -> list[np.ndarray]:
        """Per-frame units of each wave (batched as :meth:`SpeechEncoder.features_batch` allows)."""
        t0 = time.perf_counter()
        units = [encoder.quantize(f).numpy() for f in encoder.features_batch(waves, batch_size)]
        stats["extract_seconds"] += time.perf_counter() - t0
        return units

    t_start = time.perf_counter()
    chunks = [todo[s:s + window] for s in range(0, len(todo), window)]
    with contextlib.ExitStack() as stack:
        tmp = {k: stack.enter_context(atomic_path(p)) for k, p in paths.items() if k != "meta"}
        f_units = stack.enter_context(tmp["units"].open("w", encoding="utf-8"))
        f_rec = stack.enter_context(tmp["records"].open("w", encoding="utf-8"))
        f_err = stack.enter_context(tmp["errors"].open("w", encoding="utf-8"))
        # One reader thread loads the next chunk's audio while this one is encoded (soundfile and
        # torch release the GIL); outputs are still written in sorted uid order.
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="spkit-audio"))
        bar = stack.enter_context(tqdm(total=len(todo), unit="utt", disable=not progress,
                                       desc=f"quantize {name}" + (f" {shard[0]}/{shard[1]}"
                                                                  if shard[1] > 1 else "")))
        pending = pool.submit(prepare, chunks[0]) if chunks else None
        for c in range(len(chunks)):
            assert pending is not None
            items = pending.result()
            pending = pool.submit(prepare, chunks[c + 1]) if c + 1 < len(chunks) else None
            to_encode = [k for k, (_, _, v) in enumerate(items) if isinstance(v, torch.Tensor)]
            encoded = dict(zip(to_encode, encode([items[k][2] for k in to_encode])))
            for k, (u, entry, value) in enumerate(items):
                if isinstance(value, AudioError):
                    log.warning("quantize: skipping %s", value)
                    f_err.write(json.dumps({"uid": u.uid, "path": str(u.path), "problem": value.problem},
                                           ensure_ascii=False) + "\n")
                    stats["n_errors"] += 1
                    continue
                if k in encoded:
                    units = encoded[k]
                    if entry is not None:
                        _cache_write(entry, units)
                else:
                    units = value
                    stats["n_cached"] += 1
                seq = units.tolist()
                f_units.write(format_line(u.uid, seq))
                f_rec.write(json.dumps(unit_record(u, seq), ensure_ascii=False, default=json_default) + "\n")
                stats["n_ok"] += 1
                stats["n_frames"] += len(seq)
            bar.update(len(items))
            bar.set_postfix(errors=stats["n_errors"], cached=stats["n_cached"])
    meta = {"name": name, "shard": list(shard), "n_utterances": len(todo), **stats,
            "seconds": round(time.perf_counter() - t_start, 3),
            "extractor": {"name": extractor.name, "dim": int(extractor.dim), "fingerprint": ext_fp,
                          "layer": layer},
            "kmeans": {"fingerprint": km_fp, "n_clusters": kmeans.n_clusters,
                       "path": str(kmeans.path) if kmeans.path else None},
            "frame_rate": FRAME_RATE}
    meta["extract_seconds"] = round(meta["extract_seconds"], 3)
    write_json(paths["meta"], meta)
    if stats["n_errors"]:
        log.warning("quantize %s: %d of %d clips could not be read; see %s", name, stats["n_errors"],
                    len(todo), paths["errors"])
    return paths["units"]


def merge_shards(out_dir: str | os.PathLike, n: int, name: str = "units", remove: bool = False) -> Path:
    """Concatenate shards ``0..n-1`` of a job into the unsharded outputs; returns the units path.

    Each shard must have finished (its ``.meta.json`` exists) with the same extractor and k-means
    fingerprints; the result equals an unsharded run's ``.txt``, ``.jsonl`` and ``.errors.jsonl``.
    ``remove=True`` deletes the shard files after the merged ones are written.
    """
    out_dir = Path(out_dir)
    if n < 1:
        raise ValueError(f"merge_shards: n must be >= 1, got {n}")
    shard_paths = [output_paths(out_dir, name, (i, n)) if n > 1 else output_paths(out_dir, name)
                   for i in range(n)]
    metas = []
    for i, p in enumerate(shard_paths):
        if not p["meta"].is_file():
            raise FileNotFoundError(f"{p['meta']}: shard {i}/{n} of {name!r} has not finished "
                                    f"(run the same command with --shard {i}/{n})")
        metas.append(read_json(p["meta"]))
    for i, m in enumerate(metas[1:], 1):
        for key in ("extractor", "kmeans"):
            if m[key]["fingerprint"] != metas[0][key]["fingerprint"]:
                raise ValueError(f"{shard_paths[i]['meta']}: {key} fingerprint {m[key]['fingerprint']} "
                                 f"differs from shard 0's {metas[0][key]['fingerprint']}")
    final = output_paths(out_dir, name)
    if n == 1:
        return final["units"]
    names: set[str] = set()
    for kind in ("units", "records", "errors"):
        with atomic_path(final[kind]) as tmp, tmp.open("w", encoding="utf-8") as out:
            for p in shard_paths:
                text = p[kind].read_text(encoding="utf-8")
                if kind == "units":
                    for line in text.splitlines():
                        uid = line.rpartition("|")[0]
                        if uid in names:
                            raise ValueError(f"{p[kind]}: {uid!r} appears in more than one shard")
                        names.add(uid)
                out.write(text)
    summed = {k: sum(m[k] for m in metas) for k in ("n_utterances", "n_ok", "n_errors", "n_cached",
                                                    "n_frames", "extract_seconds", "seconds")}
    write_json(final["meta"], {**metas[0], **summed, "shard": [0, 1], "merged_from": n})
    if remove:
        for p in shard_paths:
            for f in p.values():
                f.unlink(missing_ok=True)
    return final["units"]

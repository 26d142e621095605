"""The embedded corpora: plan, synthesize (sharded, resumable, byte-deterministic) and lay out.

``synthesize_corpus(kind, out, preset, seed)`` writes one of five task corpora in the native layout of a
real data set (Speech Commands v0.01, Fluent Speech Commands, a VoxForge-style LID manifest,
LibriSpeech, Audio SNIPS as SUPERB's slot-filling reader takes it), plus ``spkit/alignments.jsonl``
(word and phone times of every clip, 16 kHz clip time) and ``spkit/corpus.json`` (what was made and how).

How determinism and resume work: the parent draws the whole plan (speakers, texts, file names,
per-clip parameters) from the seed, then cuts it into fixed shards. espeak-ng's output depends on
what the process synthesized before, so each shard runs in a **fresh subprocess**
(:mod:`spkit.synth.worker`) that synthesizes its clips in plan order; a shard ends by writing its
done-marker ``spkit/shards/NNNN.jsonl`` (its alignment rows) atomically. A rerun skips done shards
whose files all exist and regenerates the others whole, so the bytes never depend on interruptions
or on the number of parallel workers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from spkit import __version__
from spkit.io import read_json, write_json, write_text
from spkit.synth import pretrain_text, snips_text, texts
from spkit.synth.espeak import espeak_version, library_paths, usable_variants
from spkit.synth.speakers import (
    ENGLISH_ACCENTS,
    SPLITS,
    Speaker,
    fsc_id,
    hex_id,
    make_speakers,
    partition_variants,
    snips_id,
)

KINDS = ("kws", "intent", "lid", "asr", "sf")
ALL_KINDS = (*KINDS, "pretrain")
"""``KINDS`` are the task corpora; ``pretrain`` is the continuous read speech spkit-base learns from."""
SYNTH_VERSION = 4
"""Bump when generation changes: a corpus made by another version is not silently reused.
4: utterances of several clauses are no longer cut at the first clause end (the LID corpus' "phrase, number"
clips lost their number before)."""
SAMPLE_RATE = 16_000

# One readable table of corpus sizes. ``speakers`` is (train, valid, test); for lid it is per language.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "kws": {
        "smoke": {"speakers": (6, 2, 2), "unknown_per_speaker": 2, "repeat_prob": 0.0,
                  "background_s": 8.0, "shard_size": 64},
        "default": {"speakers": (240, 30, 30), "unknown_per_speaker": 3, "repeat_prob": 0.15,
                    "background_s": 60.0, "shard_size": 400},
    },
    "intent": {
        "smoke": {"speakers": (5, 2, 2), "clips_per_speaker": 7, "shard_size": 64},  # 35 >= 31 intents
        "default": {"speakers": (120, 15, 15), "clips_per_speaker": 24, "shard_size": 400},
    },
    "lid": {
        "smoke": {"speakers": (1, 1, 1), "clips_per_speaker": 2, "shard_size": 64},
        "default": {"speakers": (28, 4, 4), "clips_per_speaker": 10, "shard_size": 400},
    },
    "asr": {
        "smoke": {"speakers": (5, 2, 2), "clips_per_speaker": 4, "chapters_per_speaker": 2, "shard_size": 64},
        "default": {"speakers": (128, 16, 16), "clips_per_speaker": 25, "chapters_per_speaker": 2,
                    "shard_size": 400},
    },
    # Audio SNIPS-style slot filling (SNIPS intents, typed slots); SUPERB's SF task.
    "sf": {
        "smoke": {"speakers": (5, 2, 2), "clips_per_speaker": 6, "shard_size": 64},
        "default": {"speakers": (80, 10, 10), "clips_per_speaker": 16, "shard_size": 400},
    },
    # Continuous read speech for spkit-base (no test split: its voices are all training-side voices;
    # "valid" holds out whole speakers). ``english_share`` of the speakers read English.
    "pretrain": {
        "smoke": {"speakers": (8, 2, 0), "clips_per_speaker": 4, "english_share": 0.75, "shard_size": 64},
        "default": {"speakers": (1500, 40, 0), "clips_per_speaker": 19, "english_share": 0.85,
                    "shard_size": 250},
    },
}

# Per-utterance variation, the same for every corpus and preset.
AUGMENT: dict[str, Any] = {
    "rate_jitter": 0.10,            # rate *= U(1-j, 1+j)
    "pitch_jitter": 6,              # pitch += U(-j, j) (espeak 0..99 scale)
    "range_jitter": 10,
    "level_dbfs": (-34.0, -16.0),   # speech RMS level
    "pad_s": (0.05, 0.45),          # silence before/after speech (not kws: placed in 1 s)
    "noise_prob": 0.85,
    "snr_db": (5.0, 30.0),
    "noise_weights": {"white": 0.15, "pink": 0.2, "brown": 0.15, "babble": 0.25, "hum": 0.1, "tap": 0.15},
    "reverb_prob": 0.25,
    "tilt_prob": 0.35,
}

FORMATS = {"kws": "speech_commands_v0.01", "intent": "fluent_speech_commands",
           "lid": "spkit_lid_manifest", "asr": "librispeech", "pretrain": "spkit_tsv_manifest",
           "sf": "audio_snips"}
ASR_SPLIT_DIRS = {"train": "train-clean-100", "valid": "dev-clean", "test": "test-clean"}
_KIND_CODE = {"kws": 1, "intent": 2, "lid": 3, "asr": 4, "pretrain": 5, "sf": 6}
_BACKGROUND_TAG = 2**31 - 1


class SynthError(RuntimeError):
    """The corpus cannot be made: a clashing output folder, a failed shard; names the path."""


@dataclass
class BuildReport:
    """What a :func:`build_corpus` call did: shards synthesized now vs. found done."""

    root: Path
    shards_total: int
    shards_run: int
    clips: int
    noop: bool


# ---- planning ---------------------------------------------------------------------------------

def _rng(seed: int, kind: str, *tags: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _KIND_CODE[kind], *tags])


def _variant_pools() -> dict[str, list[str]]:
    return partition_variants(usable_variants())


def _variant_gender(variant: str | None) -> str:
    """The ``gender`` line of a voice variant file (``male`` when absent or for the plain voice)."""
    if not variant:
        return "male"
    _, data = library_paths()
    for line in (data / "voices" / "!v" / variant).read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "gender":
            return parts[1]
    return "male"


def _clip(path: str, text: str, spoken: str, label: Any, spk: Speaker, fixed: bool,
          meta: dict | None = None) -> dict:
    return {"path": path, "text": text, "spoken": spoken, "label": label, "speaker": spk.to_dict(),
            "split": spk.split, "fixed_len": SAMPLE_RATE if fixed else None, "meta": meta or {}}


def plan_corpus(kind: str, preset: str = "smoke", seed: int = 0) -> tuple[list[Speaker], list[dict]]:
    """Draw every speaker and clip of a corpus (no audio). Same arguments -> same plan.

    Returns ``(speakers, clips)``; each clip is a dict with ``path`` (relative to the corpus root),
    ``text`` (the transcription as the layout writes it), ``spoken`` (what espeak-ng reads),
    ``label``, ``speaker``, ``split``, ``fixed_len`` and ``meta``.
    """
    if kind not in PRESETS:
        raise ValueError(f"unknown corpus kind {kind!r}; expected one of {ALL_KINDS}")
    if preset not in PRESETS[kind]:
        raise ValueError(f"unknown preset {preset!r} for {kind}; expected one of {sorted(PRESETS[kind])}")
    cfg = PRESETS[kind][preset]
    rng = _rng(seed, kind)
    pools = _variant_pools()
    counts = dict(zip(SPLITS, cfg["speakers"]))
    taken: set[str] = set()
    clips: list[dict] = []
    if kind == "kws":
        speakers = make_speakers(rng, counts, list(ENGLISH_ACCENTS), "en", pools, hex_id, taken)
        for spk in speakers:
            k = cfg["unknown_per_speaker"]
            unknown = [str(w) for w in rng.choice(texts.KWS_UNKNOWN, k, replace=False)]
            words = list(texts.KWS_TARGETS) + unknown
            words += [w for w in texts.KWS_TARGETS if rng.uniform() < cfg["repeat_prob"]]
            takes: dict[str, int] = {}
            for w in words:
                n = takes.get(w, 0)
                takes[w] = n + 1
                label = w if w in texts.KWS_TARGETS else "_unknown_"
                clips.append(_clip(f"{w}/{spk.id}_nohash_{n}.wav", w, w, label, spk, fixed=True,
                                   meta={"word": w}))
    elif kind == "intent":
        speakers = make_speakers(rng, counts, list(ENGLISH_ACCENTS), "en", pools, fsc_id, taken)
        intents = list(texts.FSC_INTENTS)
        # One cycle through the intents per split (not per speaker): a training split of at least
        # len(intents) clips holds every intent, so no valid or test intent is unseen in training.
        order: list[int] = []
        split = None
        for spk in speakers:
            if spk.split != split:
                order, split = [], spk.split
            for _ in range(cfg["clips_per_speaker"]):
                if not order:
                    order = list(rng.permutation(len(intents)))
                action, obj, loc = intents[order.pop()]
                phrasings = texts.FSC_INTENTS[(action, obj, loc)]
                phrase = str(phrasings[int(rng.integers(0, len(phrasings)))])
                transcription = phrase[0].upper() + phrase[1:]
                name = uuid.UUID(bytes=rng.bytes(16), version=1)
                clips.append(_clip(f"wavs/speakers/{spk.id}/{name}.wav", transcription, phrase,
                                   {"action": action, "object": obj, "location": loc}, spk, fixed=False))
    elif kind == "lid":
        speakers = []
        for lang, (voices, _) in texts.LID_LANGUAGES.items():
            speakers += make_speakers(rng, counts, list(voices), lang, pools, hex_id, taken)
        for spk in speakers:
            for n in range(cfg["clips_per_speaker"]):
                t = texts.lid_text(rng, spk.language)
                path = f"wavs/{spk.language}/{spk.id}/{n}.wav"
                clips.append(_clip(path, t, t, spk.language, spk, fixed=False))
    elif kind == "pretrain":
        speakers = _plan_pretrain(rng, cfg, pools, taken, clips)
    elif kind == "sf":
        speakers = _plan_sf(rng, cfg, counts, pools, taken, clips)
    else:  # asr
        def libri_id(r: np.random.Generator) -> str:
            return str(int(r.integers(10, 10000)))

        speakers = make_speakers(rng, counts, list(ENGLISH_ACCENTS), "en", pools, libri_id, taken)
        chapters_taken: set[int] = set()
        for spk in speakers:
            chapters = []
            while len(chapters) < cfg["chapters_per_speaker"]:
                c = int(rng.integers(10, 300000))
                if c not in chapters_taken:
                    chapters_taken.add(c)
                    chapters.append(c)
            per_chapter: dict[int, int] = {}
            for _ in range(cfg["clips_per_speaker"]):
                chap = chapters[int(rng.integers(0, len(chapters)))]
                n = per_chapter.get(chap, 0)
                per_chapter[chap] = n + 1
                spoken = texts.asr_text(rng)
                uid = f"{spk.id}-{chap}-{n:04d}"
                clips.append(_clip(f"{ASR_SPLIT_DIRS[spk.split]}/{spk.id}/{chap}/{uid}.flac", spoken.upper(),
                                   spoken, None, spk, fixed=False, meta={"chapter": chap, "id": uid}))
    return speakers, clips


def _plan_pretrain(rng: np.random.Generator, cfg: dict[str, Any], pools: dict[str, list[str]],
                   taken: set[str], clips: list[dict]) -> list[Speaker]:
    """Speakers and utterances of the pretraining corpus: training-side voice variants only.

    Both of its splits draw from the *train* variant pool (and the plain voice), so no voice variant that a
    task corpus keeps for validation or test is ever heard here; ``valid`` holds out whole speakers.
    """
    train_only = {"train": pools["train"], "valid": pools["train"], "test": pools["train"]}
    n_train, n_valid, n_test = cfg["speakers"]
    other = [lang for lang in texts.LID_LANGUAGES if lang != "en"]
    speakers: list[Speaker] = []
    for split, n in zip(SPLITS, (n_train, n_valid, n_test)):
        n_en = round(n * cfg["english_share"])
        counts = {s: 0 for s in SPLITS}
        counts[split] = n_en
        # make_speakers allows the plain voice for "train" only; every pretraining speaker may use it.
        speakers += make_speakers(rng, counts, list(ENGLISH_ACCENTS), "en", train_only, hex_id, taken)
        for k in range(n - n_en):
            lang = other[k % len(other)]
            counts = {s: 0 for s in SPLITS}
            counts[split] = 1
            speakers += make_speakers(rng, counts, list(texts.LID_LANGUAGES[lang][0]), lang, train_only,
                                      hex_id, taken)
    sentences = pretrain_text.english_sentences()
    for spk in speakers:
        for n in range(cfg["clips_per_speaker"]):
            if spk.language == "en":
                text = pretrain_text.english_utterance(rng, sentences)
            else:
                text = pretrain_text.other_language_utterance(rng, spk.language)
            clips.append(_clip(f"audio/{spk.language}/{spk.id}/{spk.id}-{n:03d}.flac", text, text,
                               spk.language, spk, fixed=False))
    return speakers


def _plan_sf(rng: np.random.Generator, cfg: dict[str, Any], counts: dict[str, int],
             pools: dict[str, list[str]], taken: set[str], clips: list[dict]) -> list[Speaker]:
    """Speakers and requests of the slot-filling corpus, named as Audio SNIPS names its clips:
    ``<split>/<Speaker>-snips-<split>-<n>.wav`` (the speaker is the uid's part before the first ``-``)."""
    speakers = make_speakers(rng, counts, list(ENGLISH_ACCENTS), "en", pools, snips_id, taken)
    index = {s: 0 for s in SPLITS}
    for spk in speakers:
        for _ in range(cfg["clips_per_speaker"]):
            intent, words, tags = snips_text.sf_utterance(rng)
            uid = f"{spk.id}-snips-{spk.split}-{index[spk.split]}"
            index[spk.split] += 1
            spoken = " ".join(words)
            clips.append(_clip(f"{spk.split}/{uid}.wav", spoken.upper(), spoken, intent, spk, fixed=False,
                               meta={"id": uid, "tags": tags}))
    return speakers


def _fingerprint(kind: str, preset: str, seed: int) -> dict:
    return {"kind": kind, "preset": preset, "seed": int(seed), "synth_version": SYNTH_VERSION}


def _shards(clips: list[dict], size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, len(clips)))) for i in range(0, len(clips), size)]


# ---- running shards ---------------------------------------------------------------------------

def _shard_done(root: Path, marker: Path) -> bool:
    """A shard is done when its marker exists and every file it lists exists."""
    if not marker.is_file():
        return False
    try:
        rows = [json.loads(line) for line in marker.read_text(encoding="utf-8").splitlines() if line]
    except (OSError, json.JSONDecodeError):
        return False
    return all((root / r["path"]).is_file() for r in rows)


def _run_job(job: dict, log: Path, bar, lock: threading.Lock) -> None:
    """Run one job in a fresh ``python -m spkit.synth.worker`` process; raise SynthError on failure."""
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as err:
        proc = subprocess.Popen([sys.executable, "-m", "spkit.synth.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
        for line in proc.stdout:  # one line per finished clip
            if line.startswith("clip"):
                with lock:
                    bar.update(1)
        rc = proc.wait()
    if rc != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise SynthError(f"{job['marker']}: shard failed (exit {rc}); log {log}:\n{tail}")
    log.unlink(missing_ok=True)


def _run_jobs(jobs: list[dict], root: Path, n_parallel: int, total: int, desc: str) -> None:
    lock = threading.Lock()
    with tqdm(total=total, desc=desc, unit="clip") as bar, ThreadPoolExecutor(max_workers=n_parallel) as ex:
        futures = [ex.submit(_run_job, job, root / "spkit" / "shards" / f"{job['name']}.log", bar, lock)
                   for job in jobs]
        errors = [f.exception() for f in futures]
    for e in errors:
        if e is not None:
            raise e


# ---- layout writers ---------------------------------------------------------------------------

def _write_layout(kind: str, root: Path, clips: list[dict], speakers: list[Speaker]) -> list[str]:
    """Write the native list/manifest files; return their paths relative to ``root``."""
    written = []
    if kind == "kws":
        for split, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
            lines = sorted(c["path"] for c in clips if c["split"] == split)
            write_text(root / name, "".join(f"{p}\n" for p in lines))
            written.append(name)
    elif kind == "intent":
        for split in SPLITS:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["", "path", "speakerId", "transcription", "action", "object", "location"])
            rows = [c for c in clips if c["split"] == split]
            for i, c in enumerate(rows):
                lab = c["label"]
                w.writerow([i, c["path"], c["speaker"]["id"], c["text"], lab["action"], lab["object"],
                            lab["location"]])
            write_text(root / "data" / f"{split}_data.csv", buf.getvalue())
            written.append(f"data/{split}_data.csv")
    elif kind == "lid":
        for split in SPLITS:
            lines = ["path\tlabel\tspeaker"] + [f"{c['path']}\t{c['label']}\t{c['speaker']['id']}"
                                                for c in clips if c["split"] == split]
            write_text(root / f"{split}.tsv", "\n".join(lines) + "\n")
            written.append(f"{split}.tsv")
    elif kind == "pretrain":
        for split in SPLITS:
            rows = [c for c in clips if c["split"] == split]
            if not rows:
                continue
            lines = ["path\tlabel\tspeaker\ttext"] + [
                f"{c['path']}\t{c['label']}\t{c['speaker']['id']}\t{c['text']}" for c in rows]
            write_text(root / f"{split}.tsv", "\n".join(lines) + "\n")
            written.append(f"{split}.tsv")
    elif kind == "sf":
        # Audio SNIPS as SUPERB reads it: one transcript file for all splits,
        # "<uid> BOS <WORDS> EOS\tO <tag per word> <intent>", and slots.txt (every tag, "O" included).
        iob, trans = [], []
        for c in sorted(clips, key=lambda c: c["meta"]["id"]):
            uid = c["meta"]["id"]
            iob.append(f"{uid} BOS {c['text']} EOS\tO {' '.join(c['meta']['tags'])} {c['label']}")
            trans.append(f"{uid} {c['text']}")
        write_text(root / "all.iob.snips.txt", "\n".join(iob) + "\n")
        write_text(root / "all-trans.txt", "\n".join(trans) + "\n")
        tags = sorted({t for c in clips for t in c["meta"]["tags"]} | {"O"})
        write_text(root / "slots.txt", "\n".join(tags) + "\n")
        written += ["all.iob.snips.txt", "all-trans.txt", "slots.txt"]
    else:  # asr
        by_chapter: dict[tuple[str, str, int], list[dict]] = {}
        for c in clips:
            key = (ASR_SPLIT_DIRS[c["split"]], c["speaker"]["id"], c["meta"]["chapter"])
            by_chapter.setdefault(key, []).append(c)
        for (sdir, spk, chap), cs in sorted(by_chapter.items()):
            rel = f"{sdir}/{spk}/{chap}/{spk}-{chap}.trans.txt"
            lines = sorted(f"{c['meta']['id']} {c['text']}" for c in cs)
            write_text(root / rel, "\n".join(lines) + "\n")
            written.append(rel)
        # LibriSpeech's SPEAKERS.TXT: ;ID |SEX| SUBSET |MINUTES| NAME
        minutes: dict[str, float] = {}
        for c in clips:
            minutes[c["speaker"]["id"]] = minutes.get(c["speaker"]["id"], 0.0) + c.get("duration", 0.0) / 60
        lines = [";ID    |SEX| SUBSET           |MINUTES| NAME"]
        for s in sorted(speakers, key=lambda s: int(s.id)):
            sex = "F" if _variant_gender(s.variant) == "female" else "M"
            lines.append(f"{s.id:<6}| {sex} | {ASR_SPLIT_DIRS[s.split]:<17}| {minutes.get(s.id, 0.0):5.2f} | "
                         f"espeak-ng {s.espeak_voice}")
        write_text(root / "SPEAKERS.TXT", "\n".join(lines) + "\n")
        written.append("SPEAKERS.TXT")
    return written


def _label_key(label: Any) -> str:
    if isinstance(label, dict):
        return "|".join(str(label[k]) for k in ("action", "object", "location"))
    return "" if label is None else str(label)


# ---- the entry points -------------------------------------------------------------------------

def build_corpus(kind: str, out: str | os.PathLike, preset: str = "smoke", seed: int = 0,
                 jobs: int | None = None) -> BuildReport:
    """Synthesize (or finish, or verify) a corpus in ``out``; see :func:`synthesize_corpus`."""
    root = Path(out)
    speakers, clips = plan_corpus(kind, preset, seed)
    cfg = PRESETS[kind][preset]
    fp = _fingerprint(kind, preset, seed)
    meta_dir = root / "spkit"
    plan_file = meta_dir / "plan.json"
    if plan_file.is_file():
        found = read_json(plan_file)
        if found != fp:
            raise SynthError(f"{root}: holds a corpus made with {found}, not {fp}; "
                             "choose another --out or delete that folder")
    elif root.is_dir() and any(root.iterdir()):
        raise SynthError(f"{root}: folder is not empty and is not an spkit corpus (no spkit/plan.json); "
                         "choose an empty or new folder")
    write_json(plan_file, fp)

    shards = _shards(clips, cfg["shard_size"])
    shard_dir = meta_dir / "shards"
    todo: list[dict] = []
    for i, idx in enumerate(shards):
        marker = shard_dir / f"{i:04d}.jsonl"
        if not _shard_done(root, marker):
            todo.append({"name": f"{i:04d}", "root": str(root), "kind": kind, "seed": int(seed), "shard": i,
                         "indices": idx, "clips": [clips[k] for k in idx], "augment": AUGMENT,
                         "marker": str(marker), "kind_code": _KIND_CODE[kind]})
    background = []
    if kind == "kws":
        bg_marker = shard_dir / "background.json"
        background = [f"_background_noise_/{n}.wav" for n in texts.BACKGROUND_NOISES]
        if not (bg_marker.is_file() and all((root / p).is_file() for p in background)):
            todo.insert(0, {"name": "background", "root": str(root), "kind": kind, "seed": int(seed),
                            "background": {"names": list(texts.BACKGROUND_NOISES),
                                           "seconds": cfg["background_s"], "tag": _BACKGROUND_TAG},
                            "kind_code": _KIND_CODE[kind], "marker": str(bg_marker), "augment": AUGMENT})
    # A run killed after a shard's marker was written but before its worker's log was removed leaves that
    # log behind; the shard is done, so its log says nothing.
    running = {job["name"] for job in todo}
    for stale in shard_dir.glob("*.log") if shard_dir.is_dir() else ():
        if stale.stem not in running:
            stale.unlink(missing_ok=True)
    corpus_file = meta_dir / "corpus.json"
    if not todo and corpus_file.is_file() and (meta_dir / "alignments.jsonl").is_file():
        return BuildReport(root, len(shards) + bool(background), 0, len(clips), noop=True)

    if todo:
        # A killed run can leave spkit.io's hidden temporary files (``.name.XXXX.tmp.wav``) behind.
        for stale in root.rglob(".*.tmp*"):
            if stale.is_file():
                stale.unlink()
        n_parallel = max(1, min(jobs or min(2, os.cpu_count() or 1), len(todo)))
        _run_jobs(todo, root, n_parallel, sum(len(j.get("clips", [])) for j in todo),
                  desc=f"synth {kind} ({len(todo)}/{len(shards) + (kind == 'kws')} shards)")

    # Gather the alignment rows in plan order and write the layout files, then corpus.json last.
    rows = []
    for i in range(len(shards)):
        marker = shard_dir / f"{i:04d}.jsonl"
        rows += [json.loads(line) for line in marker.read_text(encoding="utf-8").splitlines() if line]
    if [r["path"] for r in rows] != [c["path"] for c in clips]:
        raise SynthError(f"{shard_dir}: shard markers do not match the plan; delete {root} and rerun")
    for c, r in zip(clips, rows):
        c["duration"] = r.pop("duration")
    write_text(meta_dir / "alignments.jsonl",
               "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    layout = _write_layout(kind, root, clips, speakers)
    write_json(meta_dir / "speakers.json", {s.id: s.to_dict() for s in speakers})

    splits: dict[str, Any] = {}
    for split in SPLITS:
        cs = [c for c in clips if c["split"] == split]
        labels: dict[str, int] = {}
        for c in cs:
            labels[_label_key(c["label"])] = labels.get(_label_key(c["label"]), 0) + 1
        splits[split] = {"clips": len(cs), "hours": round(sum(c["duration"] for c in cs) / 3600, 4),
                         "speakers": len({c["speaker"]["id"] for c in cs}),
                         "labels": dict(sorted(labels.items()))}

    info = {
        **fp, "format": FORMATS[kind], "spkit_version": __version__, "espeak": espeak_version(),
        "sample_rate": SAMPLE_RATE, "clips": len(clips), "splits": splits,
        "speakers": {split: sorted(s.id for s in speakers if s.split == split) for split in SPLITS},
        "variant_pools": _variant_pools(),
        "settings": {"preset": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                     "augment": {k: list(v) if isinstance(v, tuple) else v for k, v in AUGMENT.items()}},
        "files": {"layout": layout, "background_noise": background, "alignments": "spkit/alignments.jsonl",
                  "speakers": "spkit/speakers.json"},
    }
    write_json(corpus_file, info)
    return BuildReport(root, len(shards) + bool(background), len(todo), len(clips), noop=False)


def synthesize_corpus(kind: str, out: str | os.PathLike, preset: str = "smoke", seed: int = 0,
                      jobs: int | None = None) -> Path:
    """Make the ``kind`` corpus (``kws``, ``intent``, ``lid``, ``asr``, ``sf``) in ``out`` and return ``out``.

    16 kHz mono 16-bit audio (WAV; FLAC for ``asr``) in the real data set's layout. Resumes an
    interrupted run; a finished corpus with the same kind/preset/seed is left as it is. ``jobs``
    shard processes run side by side (default: 2, or 1 on a one-core machine); the bytes do not
    depend on it.
    """
    return build_corpus(kind, out, preset, seed, jobs).root

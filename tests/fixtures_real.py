"""Writers of tiny corpora in the real data sets' native layouts, for tests.

Each ``write_*`` function builds a small but complete tree under a folder (clips are short
16 kHz sine bursts written with soundfile) and returns what it wrote, so tests can compare a
loader's output with the truth rather than with hard-coded numbers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000

# Speech Commands speakers are 8-hex-digit hashes; which split each one is in is our choice.
SC_SPEAKERS: dict[str, tuple[str, ...]] = {
    "train": ("0a0a0a0a", "1b1b1b1b", "2c2c2c2c"),
    "valid": ("3d3d3d3d",),
    "test": ("4e4e4e4e",),
}
SC_WORDS: tuple[str, ...] = ("yes", "no", "up", "go", "bed", "cat")  # 4 target words + 2 unknown
SC_NOISES: dict[str, float] = {"white_noise.wav": 12.0, "running_tap.wav": 15.0}

FSC_INTENTS: tuple[tuple[str, str, str, str], ...] = (
    ("Turn on the lights", "activate", "lights", "none"),
    ("Turn off the kitchen lights", "deactivate", "lights", "kitchen"),
    ("Increase the volume", "increase", "volume", "none"),
    ("Switch to German, please", "change language", "German", "none"),
)
FSC_SPEAKERS: dict[str, tuple[str, ...]] = {
    "train": ("2BqVo8kVB2Skwgyb", "4aGjX3AG5xcxeL7a"),
    "valid": ("52XVOeXMXYuaElyw",),
    "test": ("5o9BvRGEGvhaeBwA",),
}

LIBRI_TREE: dict[str, dict[str, dict[str, list[str]]]] = {
    "train-clean-100": {"103": {"1240": ["CHAPTER ONE", "MISSUS RACHEL LYNDE"]},
                        "1034": {"121119": ["IT'S A DOG", "NO"], "121120": ["YES"]}},
    "dev-clean": {"84": {"121123": ["GO DO YOU HEAR"]}},
    "test-clean": {"1089": {"134686": ["HE HOPED THERE WOULD BE STEW", "STUFF IT INTO YOU"]}},
}


def write_wav(path: str | Path, seconds: float = 0.25, freq: float = 440.0, sample_rate: int = SR) -> Path:
    """A sine burst of ``seconds`` at ``sample_rate`` Hz (WAV or FLAC by the suffix), PCM 16."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sample_rate,
             subtype="PCM_16")
    return path


def write_noise(path: str | Path, seconds: float, seed: int = 0, sample_rate: int = SR) -> Path:
    """Seeded uniform noise of ``seconds`` (windows read back can be compared with the file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(str(path), rng.uniform(-0.5, 0.5, int(seconds * sample_rate)).astype(np.float32),
             sample_rate, subtype="PCM_16")
    return path


def write_speech_commands(root: str | Path, words: Sequence[str] = SC_WORDS,
                          speakers: dict[str, Sequence[str]] | None = None, repeats: int = 1,
                          noises: dict[str, float] | None = None,
                          clip_seconds: float = 0.25) -> dict[str, list[str]]:
    """A Speech Commands release: ``<word>/<speaker>_nohash_<n>.wav`` for every word, speaker and
    ``n < repeats``, the two list files, and ``_background_noise_/`` wavs of the given lengths.

    Returns ``{split: ['word/file.wav', ...]}``: what the list files (and the rest) say.
    """
    root = Path(root)
    speakers = SC_SPEAKERS if speakers is None else speakers
    noises = SC_NOISES if noises is None else noises
    layout: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for w, word in enumerate(words):
        for split, spks in speakers.items():
            for spk in spks:
                for n in range(repeats):
                    rel = f"{word}/{spk}_nohash_{n}.wav"
                    write_wav(root / rel, clip_seconds, freq=200.0 + 50 * w)
                    layout[split].append(rel)
    (root / "validation_list.txt").write_text("".join(r + "\n" for r in layout["valid"]))
    (root / "testing_list.txt").write_text("".join(r + "\n" for r in layout["test"]))
    for i, (name, seconds) in enumerate(noises.items()):
        write_noise(root / "_background_noise_" / name, seconds, seed=i)
    (root / "_background_noise_" / "README.md").write_text("noise\n")
    (root / "README.md").write_text("Speech Commands (test fixture)\n")
    return layout


def write_speech_commands_test_set(root: str | Path, words: Sequence[str] = ("yes", "no", "up", "go"),
                                   n_unknown: int = 3, n_silence: int = 2) -> dict[str, int]:
    """SUPERB's separate test folder: ``<word>/``, ``_unknown_/`` and ``_silence_/`` wavs.

    Returns the number of clips per label folder.
    """
    root = Path(root)
    counts: dict[str, int] = {}
    for w, word in enumerate(words):
        write_wav(root / word / f"9f9f9f9f_nohash_{w}.wav", 1.0, freq=300.0 + 40 * w)
        counts[word] = 1
    for i in range(n_unknown):
        write_wav(root / "_unknown_" / f"8e8e8e8e_nohash_{i}.wav", 1.0, freq=700.0 + i)
    for i in range(n_silence):
        write_noise(root / "_silence_" / f"silence_{i}.wav", 1.0, seed=100 + i)
    counts["_unknown_"], counts["_silence_"] = n_unknown, n_silence
    return counts


def write_fluent(root: str | Path, speakers: dict[str, Sequence[str]] | None = None,
                 intents: Sequence[tuple[str, str, str, str]] = FSC_INTENTS,
                 clip_seconds: float = 0.25) -> dict[str, list[dict[str, str]]]:
    """Fluent Speech Commands: ``data/<split>_data.csv`` and ``wavs/speakers/<id>/<name>.wav``.

    Every speaker says every intent once. Returns ``{split: [row dict, ...]}`` in CSV order.
    """
    root = Path(root)
    speakers = FSC_SPEAKERS if speakers is None else speakers
    rows_by_split: dict[str, list[dict[str, str]]] = {}
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, spks in speakers.items():
        rows = []
        for spk in spks:
            for i, (text, action, obj, location) in enumerate(intents):
                rel = f"wavs/speakers/{spk}/{spk[:4].lower()}-{i:04d}.wav"
                write_wav(root / rel, clip_seconds, freq=250.0 + 30 * i)
                rows.append({"path": rel, "speakerId": spk, "transcription": text,
                             "action": action, "object": obj, "location": location})
        write_fluent_csv(root / "data" / f"{split}_data.csv", rows)
        rows_by_split[split] = rows
    return rows_by_split


def write_fluent_csv(path: str | Path, rows: Iterable[dict[str, str]],
                     columns: Sequence[str] = ("path", "speakerId", "transcription", "action",
                                               "object", "location")) -> Path:
    """An FSC CSV: an unnamed index column, then ``columns`` (quoted where a cell has a comma)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["", *columns])
        for i, row in enumerate(rows):
            writer.writerow([i, *(row[c] for c in columns)])
    return path


def write_librispeech(root: str | Path, tree: dict[str, dict[str, dict[str, list[str]]]] | None = None,
                      clip_seconds: float = 0.25) -> dict[str, dict[str, str]]:
    """``<root>/LibriSpeech/<subset>/<speaker>/<chapter>/`` flacs and ``.trans.txt`` files.

    ``tree`` maps subset -> speaker -> chapter -> transcripts. Returns ``{subset: {id: text}}``.
    """
    base = Path(root) / "LibriSpeech"
    tree = LIBRI_TREE if tree is None else tree
    written: dict[str, dict[str, str]] = {}
    for subset, spk_map in tree.items():
        written[subset] = {}
        for spk, chapters in spk_map.items():
            for chapter, texts in chapters.items():
                folder = base / subset / spk / chapter
                lines = []
                for n, text in enumerate(texts):
                    uid = f"{spk}-{chapter}-{n:04d}"
                    write_wav(folder / f"{uid}.flac", clip_seconds, freq=180.0 + 20 * n)
                    lines.append(f"{uid} {text}\n")
                    written[subset][uid] = text
                (folder / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    return written


def write_lid_tsv(root: str | Path, languages: Sequence[str] = ("en", "de", "fr"),
                  speakers_per_split: int = 2, clip_seconds: float = 0.25) -> dict[str, list[list[str]]]:
    """spkit's ``lid`` corpus: ``<root>/{train,valid,test}.tsv`` (``path label speaker text``) and
    ``<root>/wavs/<lang>/<speaker>_<n>.wav``. Returns ``{split: [[path, label, speaker, text], ...]}``.
    """
    root = Path(root)
    rows_by_split: dict[str, list[list[str]]] = {}
    for s, split in enumerate(("train", "valid", "test")):
        rows = []
        for lang in languages:
            for k in range(speakers_per_split):
                spk = f"{lang}{s}{k}"
                rel = f"wavs/{lang}/{spk}_0.wav"
                write_wav(root / rel, clip_seconds, freq=300.0 + 10 * k)
                rows.append([rel, lang, spk, f"hello in {lang}"])
        write_tsv(root / f"{split}.tsv", ["path", "label", "speaker", "text"], rows)
        rows_by_split[split] = rows
    return rows_by_split


def write_tsv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """A tab-separated file with ``header`` and ``rows``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in [list(header), *rows]), encoding="utf-8")
    return path


def write_fairseq_manifest(path: str | Path, audio_root: str | Path, relpaths: Sequence[str],
                           texts: Sequence[str] | None = None) -> Path:
    """A fairseq manifest (``audio_root`` line, then ``relpath<TAB>n_samples``) and, with ``texts``,
    the ``.wrd`` file beside it. Sample counts are read from the files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A relative root is relative to the manifest's folder (how spkit reads it).
    base = Path(audio_root) if Path(audio_root).is_absolute() else path.parent / audio_root
    lines = [str(audio_root)]
    for rel in relpaths:
        lines.append(f"{rel}\t{sf.info(str(base / rel)).frames}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if texts is not None:
        path.with_suffix(".wrd").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def write_alignments(root: str | Path, records: Iterable[dict]) -> Path:
    """``<root>/spkit/alignments.jsonl`` (one JSON object a line) and a small ``corpus.json``."""
    folder = Path(root) / "spkit"
    folder.mkdir(parents=True, exist_ok=True)
    records = list(records)
    path = folder / "alignments.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (folder / "corpus.json").write_text(json.dumps({"name": "fixture", "clips": len(records)}) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Checkpoints in the real formats: fairseq HuBERT, GSLM km.bin, GSLM uLM folder
# --------------------------------------------------------------------------------------------

def write_fairseq_hubert(path: str | Path, config: dict, seed: int = 0, n_labels: int = 20):
    """A randomly initialised fairseq ``HubertModel`` saved in ``hubert_base_ls960.pt``'s layout
    (``cfg`` with model and task sections, ``model``, ``task_state`` holding a fairseq Dictionary).

    Norms and biases are perturbed so that a mis-mapped parameter shows. Returns the model (eval).
    """
    import torch

    from spkit.fairseq_compat import import_fairseq

    import_fairseq()  # NumPy 2 shims before fairseq's modules load
    from fairseq.data import Dictionary
    from fairseq.models.hubert.hubert import HubertConfig, HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    cfg = HubertConfig(label_rate=50, **config)
    task_cfg = HubertPretrainingConfig(data="/nonexistent", labels=["km"], label_rate=50)
    dictionary = Dictionary()
    for i in range(n_labels):
        dictionary.add_symbol(str(i))
    model = HubertModel(cfg, task_cfg, [dictionary]).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model_cfg = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    model_cfg["_name"] = "hubert"
    task = OmegaConf.to_container(OmegaConf.structured(task_cfg), resolve=True, enum_to_str=True)
    task["_name"] = "hubert_pretraining"
    torch.save({"args": None, "cfg": {"_name": None, "model": model_cfg, "task": task},
                "model": model.state_dict(), "task_state": {"dictionaries": [dictionary]},
                "optimizer_history": [{"criterion_name": "HubertCriterion", "optimizer_name": "Adam",
                                       "lr_scheduler_state": {"best": None}, "num_updates": 0}],
                "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
                "last_optimizer_state": None}, path)
    return model


def write_gslm_kmeans(path: str | Path, dim: int, n_clusters: int, seed: int = 0) -> Path:
    """GSLM's ``km.bin``: ``joblib.dump`` of a fitted sklearn ``MiniBatchKMeans``."""
    import joblib
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(seed)
    km = MiniBatchKMeans(n_clusters=n_clusters, n_init=1, random_state=seed, batch_size=256)
    km.fit(rng.standard_normal((max(20 * n_clusters, 200), dim)).astype(np.float32))
    joblib.dump(km, path)
    return Path(path)


def write_gslm_ulm(folder: str | Path, n_units: int, seed: int = 0, **config) -> Path:
    """A GSLM uLM folder (``checkpoint_best.pt`` + ``dict.txt``) as fairseq writes it, holding a small
    random ``transformer_lm`` over ``n_units`` units (spkit's fairseq export; fairseq loads it)."""
    import torch

    from spkit.ulm.dictionary import UnitDictionary
    from spkit.ulm.fairseq_io import save_fairseq_ulm
    from spkit.ulm.model import ULMConfig, UnitLM

    dictionary = UnitDictionary.from_units(range(n_units))
    torch.manual_seed(seed)
    cfg = {"dim": 32, "n_layers": 2, "n_heads": 2, "ffn_dim": 64, "max_positions": 512, **config}
    model = UnitLM(ULMConfig(vocab_size=len(dictionary), **cfg))
    save_fairseq_ulm(model, dictionary, folder)
    return Path(folder)


# Audio SNIPS (SUPERB SF): Polly voice names as speakers, SUPERB's split lists; IOB tags are bare slot types.
SNIPS_LINES: tuple[tuple[str, str, str, str], ...] = (
    # (split, words, tags, intent)
    ("train", "ADD MADONNA TO MY CHILL MIX PLAYLIST", "O artist O playlist_owner playlist playlist O",
     "AddToPlaylist"),
    ("train", "WHAT IS THE WEATHER IN PARIS ?", "O O O O O city O", "GetWeather"),
    ("valid", "PLAY SOME JAZZ & BLUES", "O O genre genre genre", "PlayMusic"),
    ("test", "BOOK A TABLE FOR TWO AT BLUE LAGOON",
     "O O O O party_size_number O restaurant_name restaurant_name", "BookRestaurant"),
)
SNIPS_SPEAKERS: dict[str, tuple[str, ...]] = {"train": ("Joanna", "Matthew"), "valid": ("Amy",),
                                              "test": ("Brian",)}


def write_snips(root: str | Path, lines: Sequence[tuple[str, str, str, str]] = SNIPS_LINES,
                speakers: dict[str, Sequence[str]] | None = None, other_speaker: str | None = "Ivy",
                extra_lines: Sequence[str] = ()) -> dict[str, dict[str, str]]:
    """``<root>/SNIPS/all.iob.snips.txt`` + ``slots.txt`` + ``<split>/<Speaker>-snips-<split>-<n>.wav``.

    Every text of a split is read by every speaker of that split (as in Audio SNIPS); ``other_speaker``
    reads them too but is in no split list (SUPERB leaves such clips out). ``extra_lines`` are appended to
    the transcript file verbatim. Returns ``{split: {uid: words}}`` of the clips a loader should list.
    """
    base = Path(root) / "SNIPS"
    speakers = SNIPS_SPEAKERS if speakers is None else speakers
    index = {"train": 0, "valid": 0, "test": 0}
    out: list[str] = []
    written: dict[str, dict[str, str]] = {s: {} for s in index}
    tags: set[str] = {"O"}
    for split, words, iob, intent in lines:
        n = index[split]
        index[split] += 1
        tags.update(iob.split())
        for spk in [*speakers[split], *([other_speaker] if other_speaker else [])]:
            uid = f"{spk}-snips-{split}-{n}"
            write_wav(base / split / f"{uid}.wav", 0.2, freq=200.0 + 30 * n)
            out.append(f"{uid} BOS {words} EOS\tO {iob} {intent}\n")
            if spk != other_speaker:
                written[split][uid] = words
    (base / "all.iob.snips.txt").write_text("".join(out) + "".join(f"{x}\n" for x in extra_lines))
    (base / "slots.txt").write_text("".join(f"{t}\n" for t in sorted(tags)))
    return written

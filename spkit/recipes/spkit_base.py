"""spkit-base: the kit's pretrained embedded models, trained once by one recipe and shipped.

GSLM pretrains its SSL model, k-means and uLM once, at scale, and only the prompts are trained per
task. spkit-base does the same at CPU scale (``spkit pretrain-base --out models/spkit-base``):

1. ``corpus``: the pretraining corpus (``spkit synth pretrain``: continuous read speech by training-side
   voices only, about 50 h at ``default``).
2. ``pack``: its train/valid clips packed into one int16 file each (:mod:`spkit.data.packed`), so
   pretraining streams the audio instead of holding 11 GB of float32 in memory.
3. ``hubert``: the tiny HuBERT, invariance augmentation as in the task presets, checkpointed every few
   hundred steps; ``--max-seconds`` ends a call early and the next call resumes bit-identically. Its
   iteration-1 targets are ``BaseRecipe.targets``:

   * ``"phones"`` (v2, the default): the synthesizer's phone label per 20 ms frame of the pretraining
     corpus's training clips (``spkit/alignments.jsonl``; a :class:`~spkit.units.oracle.PhoneInventory`
     built from those clips, all ten languages). This is the HuBERT paper's target-quality topline
     (forced-aligned phone targets): a HuBERT trained on synthesizer phone labels, **not self-supervised**;
     the kit's 2-core stand-in for a large self-supervised model.
   * ``"mfcc_kmeans"`` (v1): HuBERT's own iteration 1, k-means of MFCC features; a later iteration
     clusters the previous one's layer.
4. ``select``: (iteration, layer) by phone PNMI of K=100 units on the KWS *validation* clips (k-means fit
   on the pretraining corpus), then K by a supervised probe on deduplicated units (trained on KWS train
   clips, epoch chosen on held-out training speakers, scored on KWS validation). Nothing sees test clips.
5. ``kmeans``: k-means with the chosen layer and K on the pretraining corpus (GSLM ``km.bin``).
6. ``units``: the pretraining corpus quantized (GSLM ``name|units`` files).
7. ``ulm``: the uLM (``small`` or larger) on those units, validation perplexity on held-out speakers.
8. ``export``: ``OUT/hubert.pt`` (weights only), ``OUT/km.bin``, ``OUT/ulm/`` (fairseq/GSLM folder:
   ``checkpoint_best.pt`` + ``dict.txt``), ``OUT/spkit-base.json`` (what the main job loads: layer, K,
   CMVN, fingerprints, measurements), ``OUT/curves.json`` and ``OUT/README.md`` (the model card).

The working state lives in ``WORK`` (default ``OUT.work``): checkpoints and logs that must survive a
session are small; the packed audio, targets and unit files are rebuilt from the corpus. ``WORK/state.json``
records each finished stage with its settings; a stage whose settings changed is an error, not a silent
reuse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spkit.analysis.probes import ProbeData, _pad, train_probe
from spkit.data import load_corpus
from spkit.data.alignments import attach_alignments
from spkit.data.base import DataError, Utterance
from spkit.data.corpus import load_utterance
from spkit.data.manifest import load_tsv_corpus
from spkit.data.packed import pack_utterances
from spkit.features import load_extractor
from spkit.features.base import clip_cmvn, num_frames
from spkit.features.pretrain import INVARIANCE_AUGMENTATION, PretrainConfig, pretrain
from spkit.features.tiny_hubert import TARGET_SENTENCES, TinyHubertConfig, load_tiny_hubert
from spkit.io import read_json, torch_save, write_json, write_text
from spkit.layout import pretrain_corpus_dir
from spkit.synth import synthesize_corpus
from spkit.ulm.dictionary import UnitDictionary
from spkit.ulm.fairseq_io import save_fairseq_ulm
from spkit.ulm.train import ULMTrainConfig, load_ulm, train
from spkit.units.encoder import BASE_FORMAT, SpeechEncoder, dedup, read_base_card
from spkit.units.kmeans import KMeansModel, fit_kmeans, fit_kmeans_on_corpus, sample_frames
from spkit.units.metrics import alignments_by_uid, unit_report
from spkit.units.oracle import PhoneInventory, clip_labels
from spkit.units.quantize import quantize_corpus
from spkit.viz import _go

log = logging.getLogger(__name__)

FORMAT = BASE_FORMAT
VERSION = 1

TARGETS = ("phones", "mfcc_kmeans")
"""What iteration 1 of the recipe predicts (``spkit pretrain-base --targets``)."""

TARGET_NAMES = {"phones": "phone_alignment", "mfcc_kmeans": "mfcc_kmeans"}
"""``results.json``'s ``units.targets`` for each kind of recipe targets."""



@dataclass
class BaseRecipe:
    """Settings of :func:`pretrain_base` (a preset fills them).

    Attributes:
        targets: iteration 1's targets (:data:`TARGETS`): the synthesizer's phone per frame, or MFCC k-means.
        corpus_preset, corpus_seed: the pretraining corpus (``spkit synth pretrain``).
        task_preset: the task corpora whose *validation* clips choose the layer and K (KWS).
        model: tiny HuBERT architecture (:class:`~spkit.features.tiny_hubert.TinyHubertConfig` fields).
        iterations: one dict per HuBERT iteration: ``max_steps``, ``num_clusters`` (the targets' K; with phone
            targets iteration 1's is the phone inventory's size) and further PretrainConfig fields.
        pretrain: further :class:`~spkit.features.pretrain.PretrainConfig` fields for every iteration.
        select_k: K candidates of the units; ``select_utts``: KWS validation clips for PNMI;
        probe_train: KWS training clips for the K probe; ``probe_epochs``.
        k_tolerance: the smallest K whose probe accuracy is within this of the best is chosen (a larger
            vocabulary makes the uLM's job harder for little information).
        kmeans_max_frames: frames sampled from the pretraining corpus to fit k-means.
        ulm: :class:`~spkit.ulm.train.ULMTrainConfig` fields of the uLM.
        threads: torch CPU threads.
        seed: every random choice.
    """

    targets: str = "phones"
    corpus_preset: str = "default"
    corpus_seed: int = 0
    task_preset: str = "default"
    # d=256 x 6 (4.9 M parameters). A 3x larger model (d=384 x 8, 14.6 M) with the same 3000 steps was
    # trained and measured on the same KWS validation clips (README "spkit-base", log.jsonl
    # ``tried_not_shipped``): best phone PNMI 0.422 at layer 1 (this size: 0.431), probe 59.8 % at K=100 and
    # K=200 (62.5 % at K=200): no gain, and its weights would not fit the 60 MB the folder may take.
    model: dict[str, Any] = field(
        default_factory=lambda: {"dim": 256, "layers": 6, "heads": 4, "ffn_dim": 1024, "utterance_cmvn": True}
    )
    # v1 (``targets="mfcc_kmeans"``, :data:`MFCC_ITERATIONS`): HuBERT's iteration 1 only. Two second
    # iterations were trained and measured on KWS *validation* clips (docs/spkit-base-v1/log.jsonl
    # ``tried_not_shipped``): 2000 steps on K=500 targets of iteration 1's layer 3 (phone PNMI 0.436 vs
    # 0.431, probe 58.5 vs 62.5 %), and 6000 steps on K=500 per-clip-normalised targets of layer 1
    # (``target_layer=1, target_cmvn=True``; best PNMI 0.429 vs 0.431, probe 60.6 % at K=100): no gain.
    # v2: one iteration on phone targets. Every frame is supervised (unmasked_weight 1): the units are read
    # off unmasked input, so the frame's own phone must be in its features, and at CPU scale the masked
    # frames alone (8 % spans, about half the frames) waste half the labels. 4000 steps (64 k crops of 2 s,
    # 1.7 passes over the 42 h): a supervised target converges in far fewer steps than a self-supervised one
    # (the feasibility check in STACK_NOTES reached PNMI 0.82 on IC after 1359 steps of a 2-layer GRU).
    iterations: list[dict[str, Any]] = field(
        default_factory=lambda: [{"max_steps": 4000, "unmasked_weight": 1.0}]
    )
    pretrain: dict[str, Any] = field(
        default_factory=lambda: {
            "crop_seconds": 2.0,
            "batch_size": 16,
            "lr": 5e-4,
            "warmup_steps": 300,
            "save_every": 200,
            "kmeans_max_frames": 200_000,
        }
    )
    select_k: tuple[int, ...] = (100, 200)
    select_utts: int = 400
    select_fit_clips: int = 600
    probe_train: int = 3000
    probe_epochs: int = 15
    k_tolerance: float = 0.01
    kmeans_max_frames: int = 200_000
    # 5000 steps (12 M tokens, about 2.5 passes over the 42 h's deduplicated units): at 1000 steps the
    # validation perplexity was still falling (29.5, 25.2, 22.7, 21.7 at steps 250-1000); 5000 steps reach
    # 17.6, flattening (18.0, 17.8, 17.6 at steps 4000-5000). Chosen on the held-out speakers' units, never
    # on a task (README "spkit-base": the longer uLM).
    ulm: dict[str, Any] = field(
        default_factory=lambda: {
            "model": "small",
            "max_steps": 5000,
            "batch_size": 16,
            "max_len": 256,
            "lr": 1e-3,
            "warmup_steps": 200,
            "eval_every": 500,
            "save_every": 100,
        }
    )
    threads: int = 2
    seed: int = 0


PRESETS: dict[str, BaseRecipe] = {
    "smoke": BaseRecipe(
        corpus_preset="smoke",
        task_preset="smoke",
        model={"dim": 32, "layers": 2, "heads": 2, "ffn_dim": 64, "utterance_cmvn": True},
        # phone targets, then one k-means iteration of the phone-trained model (the optional second step)
        iterations=[{"max_steps": 8, "unmasked_weight": 1.0}, {"num_clusters": 20, "max_steps": 6}],
        pretrain={
            "crop_seconds": 1.0,
            "batch_size": 4,
            "lr": 1e-3,
            "warmup_steps": 2,
            "save_every": 4,
            "kmeans_max_frames": 4000,
        },
        select_k=(12, 20),
        select_utts=12,
        probe_train=60,
        probe_epochs=2,
        kmeans_max_frames=4000,
        ulm={
            "model": "tiny",
            "model_overrides": {"dim": 32, "n_layers": 2, "n_heads": 2, "ffn_dim": 64},
            "max_steps": 12,
            "batch_size": 8,
            "max_len": 128,
            "lr": 2e-3,
            "warmup_steps": 2,
            "eval_every": 6,
            "save_every": 6,
        },
        threads=1,
    ),
    "default": BaseRecipe(),
}

MFCC_ITERATIONS: dict[str, list[dict[str, Any]]] = {
    "smoke": [{"num_clusters": 20, "max_steps": 8}, {"num_clusters": 20, "max_steps": 6}],
    "default": [{"num_clusters": 100, "max_steps": 3000}],
}
"""v1's iterations (``targets="mfcc_kmeans"``): MFCC k-means targets, then k-means of the previous model."""

STAGES = ("corpus", "pack", "hubert", "select", "kmeans", "units", "ulm", "export")


def preset_recipe(preset: str, targets: str = "phones", **overrides: Any) -> BaseRecipe:
    """The recipe of ``preset`` with iteration-1 ``targets`` (:data:`TARGETS`), then ``overrides``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown spkit-base preset {preset!r}; choose one of {sorted(PRESETS)}")
    if targets not in TARGETS:
        raise ValueError(f"unknown targets {targets!r}; choose one of {TARGETS}")
    recipe = PRESETS[preset]
    if targets == "mfcc_kmeans":
        recipe = dataclasses.replace(recipe, targets=targets, iterations=MFCC_ITERATIONS[preset])
    return dataclasses.replace(recipe, **overrides)


def recipe_targets(recipe: dict[str, Any]) -> str:
    """``units.targets`` of a recipe as saved in a card (v1's cards predate the field: MFCC k-means)."""
    return TARGET_NAMES[recipe.get("targets", "mfcc_kmeans")]


# ------------------------------------------------------------------------------------------ state
class _State:
    """``WORK/state.json``: finished stages with their settings and results (atomic writes)."""

    def __init__(self, work: Path):
        self.path = work / "state.json"
        self.data: dict[str, Any] = read_json(self.path) if self.path.is_file() else {"stages": {}}

    def done(self, stage: str, settings: Any) -> dict[str, Any] | None:
        """The stage's result when it finished with exactly ``settings``; None means (re)run it."""
        rec = self.data["stages"].get(stage)
        if rec is None or rec["settings"] != json.loads(json.dumps(settings)):
            return None
        return rec["result"]

    def finish(self, stage: str, settings: Any, result: Any) -> Any:
        self.data["stages"][stage] = json.loads(json.dumps({"settings": settings, "result": result}))
        write_json(self.path, self.data)
        return result

    def log(self, event: str, **fields: Any) -> None:
        with open(self.path.parent / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "event": event, **fields}) + "\n")


def _data_root() -> Path:
    return Path(__file__).resolve().parents[2] / "data" / "corpora"


def corpus_path(recipe: BaseRecipe, data_root: str | os.PathLike | None = None) -> Path:
    root = Path(data_root) if data_root else _data_root()
    return pretrain_corpus_dir(root, recipe.corpus_preset, recipe.corpus_seed)


# ---------------------------------------------------------------------------------------- stages
def _hubert_stage(
    recipe: BaseRecipe,
    work: Path,
    packed: Any,
    utterances: list[Utterance],
    max_seconds: float | None,
    progress: bool,
    state: _State,
) -> dict[str, Any] | None:
    """Train the HuBERT iterations in turn; None when the time budget ran out first (resume later).

    Each iteration is its own stage (``hubert1``, ``hubert2``...): adding an iteration to the recipe
    later keeps the finished ones.
    """
    started = time.monotonic()
    results, teacher = [], None
    for it, spec in enumerate(recipe.iterations, start=1):
        phones = recipe.targets == "phones" and it == 1
        settings = {
            "model": recipe.model,
            "iteration": spec,
            "pretrain": recipe.pretrain,
            "seed": recipe.seed,
            "teacher": teacher,
        }
        if phones:
            settings["targets"] = "phones"
        res = state.done(f"hubert{it}", settings)
        if res is None:
            left = None if max_seconds is None else max_seconds - (time.monotonic() - started)
            if left is not None and left <= 0:
                return None
            frame_targets, names, extra = None, None, {}
            if phones:
                frame_targets, inventory = phone_targets(packed, utterances, work, progress)
                names, extra = inventory.names, {"targets": "phones", "num_clusters": inventory.n_units}
            pcfg = PretrainConfig(
                **{
                    "seed": recipe.seed,
                    **INVARIANCE_AUGMENTATION,
                    **recipe.pretrain,
                    **spec,
                    **extra,
                    "iteration": it,
                    "max_seconds": left,
                }
            )
            mcfg = TinyHubertConfig(**{**recipe.model, "num_classes": pcfg.num_clusters})
            res = pretrain(
                packed,
                work / "hubert" / f"iter{it}.pt",
                pcfg,
                mcfg,
                teacher=teacher,
                progress=progress,
                targets_cache=work / "cache" / f"targets_iter{it}.pt",
                frame_targets=frame_targets,
                target_names=names,
            )
            state.log(
                "hubert",
                iteration=it,
                step=res["step"],
                loss=res["loss"],
                acc=res["acc"],
                seconds=round(res["seconds"], 1),
                finished=res["finished"],
            )
            if not res["finished"]:
                return None
            finalize_checkpoint(res["path"])
            res = state.finish(f"hubert{it}", settings, res)
        res = {**res, "path": str(in_work(work, res["path"]))}
        results.append(res)
        teacher = res["path"]
    return {"iterations": results}


def phone_targets(
    packed: Any, utterances: list[Utterance], work: Path, progress: bool = True
) -> tuple[list[torch.Tensor], PhoneInventory]:
    """Iteration 1's phone targets: one unit id of a :class:`PhoneInventory` per 20 ms frame of every packed
    clip (the phone holding the frame's centre, silence outside phones), and the inventory.

    The inventory is built from these (training) clips only and kept in ``WORK/phone_inventory.json`` (small,
    committed: a resume must map phones to the same ids); the labels are cached in ``WORK/cache``.
    """
    by_uid = {u.uid: u for u in utterances}
    missing = [uid for uid in packed.uids if uid not in by_uid or "alignment" not in by_uid[uid].meta]
    if missing:
        raise DataError(
            f"{packed.source}: {len(missing)} packed clips have no synthesizer alignment "
            f"(first: {missing[0]}); phone targets need the pretraining corpus's spkit/alignments.jsonl"
        )
    clips = [by_uid[uid] for uid in packed.uids]
    frames = [num_frames(int(n)) for n in packed.lengths]
    inv_path = work / "phone_inventory.json"
    cache = work / "cache" / "phone_targets.pt"
    key = {"uids": hashlib.sha256("\n".join(packed.uids).encode()).hexdigest(), "frames": int(sum(frames))}
    labels = None
    if inv_path.is_file():
        inventory = PhoneInventory.load(inv_path)
        if cache.is_file():
            saved = torch.load(cache, map_location="cpu", weights_only=True)
            if saved["key"] == key and saved["inventory"] == inventory.fingerprint:
                labels = list(torch.split(saved["labels"].long(), saved["counts"].tolist()))
    if labels is None:
        seqs = [
            clip_labels(u, n)
            for u, n in tqdm(zip(clips, frames), total=len(clips), desc="phone targets", disable=not progress)
        ]
        if not inv_path.is_file():
            PhoneInventory.from_labels(seqs, [{"split": "train", "clips": len(clips)}]).save(inv_path)
        inventory = PhoneInventory.load(inv_path)
        labels = [torch.tensor(inventory.units(q), dtype=torch.long) for q in seqs]
        torch_save(
            {
                "key": key,
                "inventory": inventory.fingerprint,
                "labels": torch.cat(labels).to(torch.int16),
                "counts": torch.tensor([len(y) for y in labels]),
            },
            cache,
        )
    return labels, inventory


def finalize_checkpoint(path: str | os.PathLike) -> None:
    """A finished iteration keeps its weights, config, targets and curve, not its optimizer state: 20 MB
    instead of 60 MB at the default size, small enough to commit as the teacher of a later iteration."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("optimizer") is not None:
        torch_save({**ckpt, "optimizer": None, "scheduler": None}, path)


def in_work(work: Path, path: str | os.PathLike) -> Path:
    """A checkpoint path recorded in ``state.json``, found again after the repository moved (same name
    under ``WORK/hubert``)."""
    p = Path(path)
    return p if p.exists() else work / "hubert" / p.name


def _probe_units(
    units: dict[str, list[list[int]]], labels: dict[str, list[str]], vocab: int, epochs: int, seed: int
) -> float:
    """Validation accuracy of a BiGRU probe on deduplicated units (spkit.analysis.probes' model)."""
    classes = sorted(set(labels["train"]))
    data = {}
    for split in ("train", "valid", "test"):
        keep = [i for i, y in enumerate(labels[split]) if y in classes]
        x, lengths = _pad([torch.tensor(units[split][i], dtype=torch.long) + 1 for i in keep])
        data[split] = ProbeData(x, lengths, torch.tensor([classes.index(labels[split][i]) for i in keep]))
    return float(train_probe(data, len(classes), vocab=vocab, epochs=epochs, seed=seed)["test"])


def _select_stage(
    recipe: BaseRecipe,
    hubert: dict[str, Any],
    packed: Any,
    progress: bool,
    data_root: str | os.PathLike | None,
) -> dict[str, Any]:
    """Choose (iteration, layer) by phone PNMI on KWS validation clips, then K by the unit probe."""
    root = Path(data_root) if data_root else _data_root()
    kws_root = synthesize_corpus(
        "kws",
        root / f"{recipe.task_preset}-seed{recipe.corpus_seed}" / "kws",
        preset=recipe.task_preset,
        seed=recipe.corpus_seed,
    )
    kws = load_corpus("speech_commands", kws_root)
    rng = np.random.default_rng(recipe.seed)

    def sample(utts: list[Utterance], n: int) -> list[Utterance]:
        idx = rng.choice(len(utts), size=min(n, len(utts)), replace=False)
        return [utts[i] for i in sorted(idx)]

    valid = kws["valid"]
    alignments = alignments_by_uid(valid)
    sel = [u for u in sample(valid, recipe.select_utts) if u.uid in alignments]
    fit_idx = sorted(rng.choice(len(packed), size=min(len(packed), recipe.select_fit_clips), replace=False))
    per_clip = max(1, recipe.kmeans_max_frames // 4 // max(1, len(fit_idx)))
    rows = []
    for it, res in enumerate(hubert["iterations"], start=1):
        base = load_extractor("tiny_hubert", checkpoint=res["path"], cmvn=True)
        # every layer of a clip in one pass; k-means per layer on frames of the pretraining corpus
        fit: list[list[torch.Tensor]] = [[] for _ in range(base.num_layers)]
        for i in fit_idx:
            x = _all_layers(base, packed[i])
            keep = torch.from_numpy(
                np.sort(rng.choice(x.shape[1], size=min(per_clip, x.shape[1]), replace=False))
            )
            for layer in range(base.num_layers):
                fit[layer].append(x[layer, keep])
        sel_feats = [_all_layers(base, load_utterance(u)) for u in sel]
        for layer in range(1, base.num_layers + 1):
            km = fit_kmeans(torch.cat(fit[layer - 1]).numpy(), recipe.select_k[0], seed=recipe.seed)
            units = {u.uid: km.predict(f[layer - 1]).tolist() for u, f in zip(sel, sel_feats)}
            rep = unit_report(units, alignments)
            rows.append(
                {
                    "iteration": it,
                    "layer": layer,
                    "k": recipe.select_k[0],
                    "phone_pnmi": rep["phones"]["pnmi"],
                    "word_pnmi": rep["words"]["pnmi"],
                }
            )
            log.info("select: iteration %d layer %d phone PNMI %.3f", it, layer, rep["phones"]["pnmi"])
    best = max(rows, key=lambda r: r["phone_pnmi"])
    ext = load_extractor(
        "tiny_hubert",
        checkpoint=hubert["iterations"][best["iteration"] - 1]["path"],
        layer=best["layer"],
        cmvn=True,
    )

    # K by the probe: train on KWS training clips (epoch chosen on held-out training speakers), score valid.
    train = sample(kws["train"], recipe.probe_train)
    speakers = sorted({u.speaker for u in train})
    held = set(speakers[::10])
    splits = {
        "train": [u for u in train if u.speaker not in held],
        "valid": [u for u in train if u.speaker in held],
        "test": valid,
    }
    with torch.inference_mode():
        feats = {s: [ext.extract(load_utterance(u)) for u in us] for s, us in splits.items()}
        frames = sample_frames(
            (ext.extract(packed[i]) for i in fit_idx), recipe.kmeans_max_frames // 4, recipe.seed
        )
    labels = {s: [str(u.label) for u in us] for s, us in splits.items()}
    k_rows = []
    for k in recipe.select_k:
        km = fit_kmeans(frames, k, seed=recipe.seed)
        units = {s: [dedup(km.predict(f).tolist())[0] for f in fs] for s, fs in feats.items()}
        acc = _probe_units(units, labels, k, recipe.probe_epochs, recipe.seed)
        k_rows.append({"k": k, "probe_valid_accuracy": acc})
        log.info("select: K=%d dedup-unit probe %.3f on KWS valid", k, acc)
    top = max(r["probe_valid_accuracy"] for r in k_rows)
    chosen_k = min(r["k"] for r in k_rows if r["probe_valid_accuracy"] >= top - recipe.k_tolerance)
    return {
        "iteration": best["iteration"],
        "layer": best["layer"],
        "k": chosen_k,
        "layers": rows,
        "ks": k_rows,
        "checkpoint": hubert["iterations"][best["iteration"] - 1]["path"],
    }


def _all_layers(ext: Any, wave: torch.Tensor) -> torch.Tensor:
    """Every layer of one clip ``(layers, frames, dim)``, normalised per clip when the extractor is."""
    with torch.inference_mode():
        x = ext.extract_layers(wave)
    return clip_cmvn(x) if ext.cmvn else x


def _extractor(select: dict[str, Any], work: Path | None = None) -> Any:
    checkpoint = select["checkpoint"] if work is None else in_work(work, select["checkpoint"])
    return load_extractor("tiny_hubert", checkpoint=str(checkpoint), layer=select["layer"], cmvn=True)


# ------------------------------------------------------------------------------------------ driver
def pretrain_base(
    out: str | os.PathLike,
    preset: str = "default",
    *,
    work: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    max_seconds: float | None = None,
    until: str | None = None,
    progress: bool = True,
    recipe: BaseRecipe | None = None,
) -> dict[str, Any]:
    """Run (or resume) the spkit-base recipe into ``out``; returns ``WORK/state.json``'s content.

    ``max_seconds`` bounds this call's HuBERT training (the longest stage): the call then stops with a
    checkpoint and a later call resumes. ``until`` stops after the named stage (see :data:`STAGES`).
    """
    recipe = recipe or preset_recipe(preset)
    if until is not None and until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; choose one of {STAGES}")
    out = Path(out)
    work = Path(work) if work else out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    # What a later session needs to resume is committed (state, logs, finished HuBERT iterations, km.bin,
    # an unfinished uLM's checkpoint_last.pt); what is rebuilt from the corpus is not.
    write_text(
        work / ".gitignore",
        "# rebuilt from the corpus on resume; not committed\naudio/\ncache/\nunits/\n"
        "ulm-*/checkpoint_best.pt\n",
    )
    torch.set_num_threads(recipe.threads)
    state = _State(work)
    settings = dataclasses.asdict(recipe)
    t0 = time.perf_counter()

    def stop_after(stage: str) -> bool:
        return until == stage

    # 1-2. corpus and packed audio (rebuilt whenever missing: neither is committed)
    corpus = synthesize_corpus(
        "pretrain", corpus_path(recipe, data_root), preset=recipe.corpus_preset, seed=recipe.corpus_seed
    )
    corpus_info = read_json(corpus / "spkit" / "corpus.json")
    state.finish(
        "corpus",
        {"preset": recipe.corpus_preset, "seed": recipe.corpus_seed},
        {
            "path": str(corpus),
            "clips": corpus_info["clips"],
            "hours": {s: v["hours"] for s, v in corpus_info["splits"].items()},
        },
    )
    if stop_after("corpus"):
        return state.data
    splits = load_tsv_corpus(corpus, ("train", "valid"))
    if recipe.targets == "phones":
        splits = attach_alignments(splits, corpus)
    packed = pack_utterances(splits["train"], work / "audio" / "train.json", progress=progress)
    state.finish(
        "pack",
        {"clips": len(splits["train"])},
        {"clips": len(packed), "hours": round(packed.seconds / 3600, 2)},
    )
    if stop_after("pack"):
        return state.data

    # 3. HuBERT iterations
    state.log("hubert_start", max_seconds=max_seconds)
    hubert = _hubert_stage(recipe, work, packed, splits["train"], max_seconds, progress, state)
    if hubert is None:
        state.log("paused", stage="hubert", seconds=round(time.perf_counter() - t0, 1))
        return state.data
    state.finish("hubert", {"iterations": len(recipe.iterations)}, hubert)
    if stop_after("hubert"):
        return state.data

    # 4. layer and K on validation clips
    sel_settings = {
        k: settings[k]
        for k in (
            "select_k",
            "select_utts",
            "probe_train",
            "probe_epochs",
            "k_tolerance",
            "kmeans_max_frames",
            "task_preset",
            "seed",
        )
    }
    sel_settings["checkpoints"] = [r["path"] for r in hubert["iterations"]]
    select = state.done("select", sel_settings)
    if select is None:
        select = state.finish(
            "select", sel_settings, _select_stage(recipe, hubert, packed, progress, data_root)
        )
    if stop_after("select"):
        return state.data

    # 5. k-means on the pretraining corpus
    km_path = work / "km.bin"
    ext = _extractor(select, work)
    km_settings = {
        "layer": select["layer"],
        "k": select["k"],
        "iteration": select["iteration"],
        "max_frames": recipe.kmeans_max_frames,
    }
    if state.done("kmeans", km_settings) is None or not km_path.is_file():
        rng = np.random.default_rng(recipe.seed)
        fit_utts = [
            splits["train"][i]
            for i in sorted(
                rng.choice(len(splits["train"]), size=min(1500, len(splits["train"])), replace=False)
            )
        ]
        km = fit_kmeans_on_corpus(
            fit_utts,
            ext,
            select["k"],
            max_frames=recipe.kmeans_max_frames,
            seed=recipe.seed,
            progress=progress,
        )
        km.save(km_path)
        state.finish("kmeans", km_settings, {"fingerprint": km.fingerprint, "n_clusters": km.n_clusters})
    km = KMeansModel.load(km_path)
    if stop_after("kmeans"):
        return state.data

    # 6. units of the pretraining corpus
    unit_files = {}
    for split, utts in splits.items():
        unit_files[split] = str(
            quantize_corpus(
                utts,
                SpeechEncoder(ext, km),
                work / "units",
                name=split,
                cache_dir=work / "cache" / "units",
                batch_size=16,
                progress=progress,
            )
        )
    state.finish("units", km_settings, unit_files)
    if stop_after("units"):
        return state.data

    # 7. the uLM
    tcfg = ulm_train_config(recipe)
    ulm_settings = {"train": dataclasses.asdict(tcfg), "kmeans": km.fingerprint}
    ulm = state.done("ulm", ulm_settings)
    ulm_dir = work / f"ulm-{km.fingerprint[:8]}"
    if ulm is None:
        ulm_dir = work / f"ulm-{km.fingerprint[:8]}"
        summary = train_ulm(
            recipe, unit_files["train"], unit_files["valid"], ulm_dir, km.n_clusters, progress
        )
        if summary["steps"] < tcfg.max_steps:  # interrupted: the next call resumes checkpoint_last.pt
            return state.data
        ulm = state.finish("ulm", ulm_settings, {**summary, "dir": str(ulm_dir)})
    if stop_after("ulm"):
        return state.data

    # 8. export
    export = export_base(out, work, recipe, state.data)
    state.finish("export", {"out": str(out)}, export)
    return state.data


def ulm_train_config(recipe: BaseRecipe) -> Any:
    """The :class:`~spkit.ulm.train.ULMTrainConfig` of spkit-base's uLM stage (``recipe.ulm``,
    ``recipe.seed``)."""
    return ULMTrainConfig(**{**recipe.ulm, "seed": recipe.seed})


def train_ulm(recipe: BaseRecipe, train_units: str | os.PathLike, valid_units: str | os.PathLike,
              out_dir: str | os.PathLike, n_units: int, progress: bool = True) -> dict[str, Any]:
    """spkit-base's uLM stage: train (or resume, from ``out_dir/checkpoint_last.pt``) the recipe's uLM on GSLM
    unit files (``name|units``, deduplicated when read) over a fixed dictionary of ``n_units`` units; returns
    the trainer's summary. The oracle topline trains its uLM with this same function."""

    out_dir = Path(out_dir)
    return train(ulm_train_config(recipe), train_units, valid_units, out_dir,
                 resume=(out_dir / "checkpoint_last.pt").is_file(), progress=progress,
                 dictionary=UnitDictionary.from_units(range(n_units)))


def export_base(out: Path, work: Path, recipe: BaseRecipe, state: dict[str, Any]) -> dict[str, Any]:
    """Write the shipped files (see the module docstring) from the finished stages in ``work``."""
    stages = state["stages"]
    select = stages["select"]["result"]
    out.mkdir(parents=True, exist_ok=True)
    _, ckpt = load_tiny_hubert(in_work(work, select["checkpoint"]))
    torch_save(
        {
            k: ckpt[k]
            for k in (
                "format",
                "version",
                "config",
                "model",
                "targets",
                "step",
                "history",
                "seconds",
                "audio_seconds",
                "train",
            )
        }
        | {"optimizer": None, "scheduler": None},
        out / "hubert.pt",
    )
    KMeansModel.load(work / "km.bin").save(out / "km.bin")
    lm, dictionary = load_ulm(Path(stages["ulm"]["result"]["dir"]) / "checkpoint_best.pt")
    save_fairseq_ulm(lm, dictionary, out / "ulm")
    ext = _extractor({**select, "checkpoint": str(out / "hubert.pt")})
    km = KMeansModel.load(out / "km.bin")
    card = {
        "format": FORMAT,
        "version": VERSION,
        "targets": TARGET_NAMES[recipe.targets],
        "recipe": dataclasses.asdict(recipe),
        "hubert": "hubert.pt",
        "layer": select["layer"],
        "iteration": select["iteration"],
        "kmeans": "km.bin",
        "n_clusters": km.n_clusters,
        "cmvn": True,
        "ulm": "ulm",
        "extractor_fingerprint": ext.fingerprint,
        "kmeans_fingerprint": km.fingerprint,
        "ulm_fingerprint": lm.fingerprint(),
        "selection": select,
        "corpus": stages["corpus"]["result"],
        "ulm_summary": stages["ulm"]["result"],
        "hubert_summary": [
            {k: r[k] for k in ("step", "loss", "acc", "seconds", "audio_seconds") if k in r}
            | {"num_clusters": load_tiny_hubert(in_work(work, r["path"]))[1]["targets"]["num_clusters"]}
            for r in stages["hubert"]["result"]["iterations"]
        ],
    }
    ulm_dir = Path(stages["ulm"]["result"]["dir"])
    write_json(out / "curves.json", curves(work, in_work(work, select["checkpoint"]), ulm_dir))
    write_json(out / "spkit-base.json", card)
    write_text(out / "README.md", model_card(card))
    return {"files": sorted(p.name for p in out.iterdir())}


def model_card(card: dict[str, Any]) -> str:
    """The shipped folder's README: data, sizes, steps, CPU time, selection, perplexity, rebuild command."""
    sel = card["selection"]
    hub = card["hubert_summary"]
    ulm = card["ulm_summary"]
    corpus = card["corpus"]
    recipe = card["recipe"]
    lines = [
        "# spkit-base",
        "",
        "The kit's pretrained embedded models (tiny HuBERT, k-means, unit LM), trained once on the CPU by",
        "`spkit pretrain-base` and loaded by `spkit run --preset default`.",
        "Generated by the recipe; do not edit.",
        "",
        f"**The encoder is {TARGET_SENTENCES[recipe_targets(recipe)]}.**",
        "",
        "## Data",
        "",
        "Pretraining corpus "
        f"`spkit synth pretrain --preset {recipe['corpus_preset']} --seed {recipe['corpus_seed']}`: "
        f"{corpus['clips']} clips, {corpus['hours']['train']:.1f} h train + "
        f"{corpus['hours']['valid']:.1f} h valid, "
        "read by training-side voices only "
        "(no voice variant of any task corpus' validation or test split).",
        "",
        "## Models",
        "",
        f"- `hubert.pt`: tiny HuBERT {recipe['model']}, iterations "
        + ", ".join(
            f"{i + 1}: {_target_words(recipe, i, h)}, {h['step']} steps, "
            f"{h['seconds'] / 3600:.2f} h of training steps on {recipe.get('threads', 2)} CPU threads, "
            f"masked acc {h['acc']:.3f}"
            for i, h in enumerate(hub)
        )
        + ".",
        f"- units: iteration {sel['iteration']}, layer {sel['layer']} (per-clip CMVN), "
        f"K={card['n_clusters']} (`km.bin`).",
        f"- `ulm/`: {recipe['ulm']['model']} uLM, {ulm.get('steps')} steps, validation perplexity "
        f"{ulm['best_valid_ppl']:.2f} on the held-out speakers' units ({ulm['num_parameters']:,} parameters, "
        f"{ulm['cpu_seconds'] / 3600:.2f} CPU-h).",
        "",
        "## Selection (KWS validation clips; no test clip is used)",
        "",
        f"| iteration | layer | phone PNMI (K={sel['layers'][0]['k']}) | word PNMI |",
        "|---|---|---:|---:|",
        *[
            f"| {r['iteration']} | {r['layer']} | {r['phone_pnmi']:.3f} | {r['word_pnmi']:.3f} |"
            for r in sel["layers"]
        ],
        "",
        "| K | dedup-unit probe, KWS valid |",
        "|---:|---:|",
        *[f"| {r['k']} | {100 * r['probe_valid_accuracy']:.1f} % |" for r in sel["ks"]],
        "",
        "## Rebuild",
        "",
        f"```\nspkit pretrain-base --out models/spkit-base --preset {recipe['corpus_preset']} "
        f"--targets {recipe.get('targets', 'mfcc_kmeans')} --resume\n```",
        "(resumable: `--max-seconds S` ends a call after S seconds of HuBERT training with a checkpoint).",
        "",
    ]
    return "\n".join(lines)


def _target_words(recipe: dict[str, Any], i: int, summary: dict[str, Any]) -> str:
    """What iteration ``i`` (0-based) predicted, for the model card."""
    if i == 0 and recipe.get("targets") == "phones":
        return f"{summary['num_clusters']} synthesizer phone labels (targets)"
    return f"K={summary['num_clusters']} k-means targets"


def load_base(folder: str | os.PathLike) -> dict[str, Any]:
    """The shipped ``spkit-base.json`` with absolute paths (:func:`spkit.units.encoder.read_base_card`)."""
    return read_base_card(folder)


def curves(work: str | os.PathLike, hubert: str | os.PathLike, ulm_dir: str | os.PathLike) -> dict[str, Any]:
    """Training curves for the model card and notebooks 01-02: HuBERT ``[step, loss, masked acc]`` of every
    iteration up to the shipped one (every 10th step), and the uLM's validation history."""
    out: dict[str, Any] = {"hubert": {}, "ulm": None}
    for p in sorted((Path(work) / "hubert").glob("iter*.pt")):
        _, ckpt = load_tiny_hubert(p)
        hist = ckpt["history"]
        out["hubert"][p.stem] = [
            [int(h[0]), round(float(h[1]), 4), round(float(h[2]), 4)]
            for h in hist
            if h[0] % 10 == 0 or h is hist[-1]
        ]
        if Path(p).resolve() == Path(hubert).resolve():
            break
    hist_file = Path(ulm_dir) / "history.json"
    if hist_file.is_file():
        out["ulm"] = read_json(hist_file)["history"]
    return out


def hubert_curve_figure(curves_: dict[str, Any]) -> Any:
    """Masked-prediction loss by step, one line per iteration (plotly)."""
    go = _go()
    fig = go.Figure(
        [
            go.Scatter(x=[h[0] for h in hist], y=[h[1] for h in hist], mode="lines", name=name)
            for name, hist in curves_["hubert"].items()
        ]
    )
    fig.update_layout(
        title="spkit-base: tiny HuBERT masked-prediction loss",
        xaxis_title="step",
        yaxis_title="loss",
        height=350,
    )
    return fig

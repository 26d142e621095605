"""Unit discovery, end to end: what notebook 01 runs.

Embedded path (presets ``smoke``/``default``): pretrain a tiny HuBERT here (iteration 1 on MFCC
k-means targets, iteration 2 on clusters of iteration-1 features), pick the (iteration, layer) whose
k-means units carry the most phonetic information (PNMI against the synthesizer's phone timings),
fit k-means on frames of every corpus's training split, quantize every split of every corpus, and
measure the units (phone/word purity and PNMI, deduplicated length) against MFCC units.

Real path (preset ``paper``): a fairseq ``hubert_base_ls960.pt`` at layer 6 and GSLM's ``km.bin``
(K=100) quantize the real corpora; nothing is trained.

Oracle path (``units="oracle"``, preset ``oracle``; a topline, not a speech system): no model at all. Every
clip's units are the synthesizer's phone labels per 20 ms frame, deduplicated (:mod:`spkit.units.oracle`),
through a phone inventory built from the *training* split of the pretraining corpus only (``pretrain``: the
corpus spkit-base learns its units from, as its k-means is fitted there), with a reserved unit for a phone it
never saw and one for silence. The task corpora and the pretraining corpus (for the uLM) are written as unit
files; the downstream baseline's SSL model (spkit-base's HuBERT) is recorded in ``unit_model.json``.

Everything lands in the run folder (:class:`spkit.layout.RunLayout`): ``hubert/iter*.pt``,
``units/km.bin``, ``units/unit_model.json`` (how to rebuild the unit model:
:meth:`spkit.units.encoder.SpeechEncoder.from_run`, what ``spkit predict`` and the later notebooks load),
``units/<corpus>/<split>.{txt,jsonl}``, ``units/metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from spkit.audio import AudioError
from spkit.data import load_corpus
from spkit.data.base import DataError, Utterance
from spkit.data.corpus import load_utterance
from spkit.features import load_extractor
from spkit.features.base import clip_cmvn
from spkit.features.pretrain import INVARIANCE_AUGMENTATION, PretrainConfig, pretrain_iterations
from spkit.features.tiny_hubert import TinyHubertConfig
from spkit.io import read_json, write_json
from spkit.layout import RunLayout, corpus_dir, default_data_root, pretrain_corpus_dir
from spkit.presets import (
    PRETRAIN_CORPUS,
    PRETRAIN_CORPUS_SEED,
    SHIPPED_BASE,
    corpus_preset,
    uses_oracle_units,
)
from spkit.recipes.spkit_base import load_base
from spkit.synth import synthesize_corpus
from spkit.units.encoder import SpeechEncoder, save_unit_model
from spkit.units.kmeans import KMeansModel, fit_kmeans, fit_kmeans_on_corpus
from spkit.units.metrics import alignments_by_uid, unit_report
from spkit.units.oracle import (
    ORACLE_KIND,
    ORACLE_LABEL,
    PhoneInventory,
    quantize_oracle,
    save_oracle_unit_model,
)
from spkit.units.quantize import quantize_corpus, read_units

log = logging.getLogger(__name__)

# corpus name in a run -> loader kind (spkit.data.load_corpus); ``pretrain``: the pretraining corpus (oracle)
CORPUS_KINDS = {"kws": "speech_commands", "intent": "fluent", "lid": "tsv", "asr": "librispeech",
                "sf": "snips", "pretrain": "tsv"}
PRETRAIN = PRETRAIN_CORPUS
KWS_TEST = "kws_test"  # SUPERB's KS test folder, given beside kws (see load_corpora)


# Invariance augmentation of the tiny HuBERT's input (ContentVec / WavLM style: targets stay those of the
# unperturbed clip). Measured on the default KWS corpus, one seed (docs/units.md, "Invariance augmentation"):
# test phone PNMI 0.439 -> 0.492 and the SUPERB-style downstream head 51.5 -> 60.6 % at 500 steps. 1000 steps
# then beat 500 (deep prompts 54.7 % at 12 epochs vs 45.3 % at 20), 2000 did not beat 1000 (48.3 %), and a
# second HuBERT iteration scored below the first one's best layer. The settings:
# features.pretrain.INVARIANCE_AUGMENTATION.


@dataclass
class UnitDiscoveryConfig:
    """Settings of :func:`discover_units` (a preset fills them; notebooks override single fields).

    Attributes:
        units: ``ssl`` (SSL features + k-means, every preset's own) or ``oracle`` (the oracle topline: the
            synthesizer's phone labels per frame, :func:`discover_oracle_units`; ``base`` then only names the
            SSL model of the downstream baseline, spkit-base when None).
        oracle_inventory_from: the corpora whose *training* split builds the oracle's phone inventory.
        base: an spkit-base folder (``models/spkit-base``): its tiny HuBERT, layer, CMVN and ``km.bin`` are
            used as they are (nothing is trained; the fields below that it sets are ignored).
        features: ``tiny_hubert`` (trained here), ``hubert`` (a real checkpoint), ``mfcc`` or ``logmel``.
        checkpoint: the HuBERT checkpoint for ``features="hubert"`` (trusted files only).
        kmeans_path: an existing k-means model (GSLM ``km.bin``) to use instead of fitting one.
        layer: the transformer layer; None = choose by PNMI against phones (tiny HuBERT only).
        n_clusters: K, the unit vocabulary size (GSLM: 100).
        feature_cmvn: normalise each clip's layer features to zero mean, unit variance per dim before
            k-means (and wherever the unit model runs): removes what is constant over a clip (speaker,
            channel). GSLM does not (its ``km.bin`` files expect raw HuBERT features).
        iterations: HuBERT pretraining iterations (1: MFCC targets; 2: iteration-1 targets).
        pretrain_steps: optimizer steps per iteration.
        pretrain_max_seconds: wall-clock cap per iteration (None: steps only).
        pretrain_audio_s: seconds of training audio used for pretraining (sampled over the corpora).
        model: tiny HuBERT architecture overrides (:class:`TinyHubertConfig` fields: dim, layers, ...).
        pretrain_options: further :class:`PretrainConfig` fields (augmentation, crop, batch, lr, ...).
        select_utts: utterances (KWS valid split) used to compare layers.
        kmeans_max_frames: frames sampled to fit the final k-means.
        mfcc_baseline: also measure MFCC k-means units on the same splits.
        seed: seed of every random choice here.
    """

    units: str = "ssl"
    oracle_inventory_from: tuple[str, ...] = (PRETRAIN,)
    base: str | None = None
    features: str = "tiny_hubert"
    checkpoint: str | None = None
    kmeans_path: str | None = None
    layer: int | None = None
    n_clusters: int = 100
    feature_cmvn: bool = True
    iterations: int = 1
    pretrain_steps: int = 1000
    pretrain_max_seconds: float | None = None  # a wall-clock cap makes results machine-dependent
    pretrain_audio_s: float = 3600.0
    model: dict[str, Any] = field(default_factory=lambda: {"dim": 192, "layers": 4, "heads": 4,
                                                           "ffn_dim": 768, "utterance_cmvn": True})
    # 1 s crops: what the measurements above used (KWS clips are 1 s), half the cost of HuBERT's longer crops
    pretrain_options: dict[str, Any] = field(
        default_factory=lambda: {"crop_seconds": 1.0, **INVARIANCE_AUGMENTATION})
    select_utts: int = 300
    kmeans_max_frames: int = 100_000
    mfcc_baseline: bool = True
    seed: int = 0


PRESETS: dict[str, UnitDiscoveryConfig] = {
    "smoke": UnitDiscoveryConfig(n_clusters=20, iterations=2, pretrain_steps=12, pretrain_max_seconds=None,
                                 pretrain_audio_s=60.0, select_utts=12, kmeans_max_frames=5_000,
                                 model={"dim": 32, "layers": 2, "heads": 2, "ffn_dim": 64,
                                        "utterance_cmvn": True},
                                 pretrain_options=dict(INVARIANCE_AUGMENTATION)),
    "default": UnitDiscoveryConfig(base=str(SHIPPED_BASE)),
    "full": UnitDiscoveryConfig(base=str(SHIPPED_BASE)),  # default's models; a larger prompting budget
    "scratch": UnitDiscoveryConfig(),
    "paper": UnitDiscoveryConfig(features="hubert", layer=6, n_clusters=100, iterations=0,
                                 feature_cmvn=False, mfcc_baseline=False),
    "oracle": UnitDiscoveryConfig(units="oracle", base=str(SHIPPED_BASE), mfcc_baseline=False),
}


def preset_config(preset: str, **overrides: Any) -> UnitDiscoveryConfig:
    """The preset's config with ``overrides`` (unknown names are an error), spkit-base resolved."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    config = dataclasses.replace(PRESETS[preset], **overrides)
    if uses_oracle_units(preset, config.units) and config.base is None and config.checkpoint is None:
        config = dataclasses.replace(config, units="oracle", base=str(SHIPPED_BASE))  # the downstream's SSL
    return resolve_base(config)


def resolve_base(config: UnitDiscoveryConfig) -> UnitDiscoveryConfig:
    """``config`` with an spkit-base folder's parts filled in (unchanged when ``base`` is None)."""
    if config.base is None:
        return config

    card = load_base(config.base)
    return dataclasses.replace(config, features="tiny_hubert", checkpoint=card["hubert"], layer=card["layer"],
                               kmeans_path=card["kmeans"], n_clusters=card["n_clusters"],
                               feature_cmvn=bool(card["cmvn"]), iterations=0)


# ------------------------------------------------------------------------------------------ corpora
def load_corpora(corpora: Mapping[str, str | os.PathLike | tuple[str, str | os.PathLike]]
                 ) -> dict[str, dict[str, list[Utterance]]]:
    """``{name: root}`` (or ``{name: (kind, root)}``) -> ``{name: {split: [Utterance]}}``.

    Names ``kws``, ``intent``, ``lid``, ``asr``, ``sf`` imply their loader kind; a missing folder is a
    :class:`DataError` naming it. ``kws_test`` is not a corpus of its own: it is SUPERB's separate KS test
    folder (``speech_commands_test_set_v0.01``), the test split of ``kws`` (whose ``testing_list.txt`` clips
    then go unused). Utterance uids are prefixed with the corpus name, so one unit cache and one k-means
    sample can mix corpora.
    """

    test_folder = corpora.get(KWS_TEST)
    if test_folder is not None:
        if "kws" not in corpora:
            raise DataError(f"{KWS_TEST}={test_folder}: a KS test folder needs the training corpus too "
                            "(kws=speech_commands_v0.01)")
        if not Path(str(test_folder)).is_dir():
            raise DataError(f"{test_folder}: KS test folder ({KWS_TEST}) does not exist")
    out: dict[str, dict[str, list[Utterance]]] = {}
    for name, spec in corpora.items():
        if name == KWS_TEST:
            continue
        kind, root = spec if isinstance(spec, tuple) else (CORPUS_KINDS.get(name, "auto"), spec)
        if not Path(root).exists():
            raise DataError(f"{root}: corpus folder for {name!r} does not exist")
        options = {"test_root": str(test_folder)} if name == "kws" and test_folder is not None else {}
        splits = load_corpus(kind, root, **options)
        out[name] = {s: [dataclasses.replace(u, uid=f"{name}/{u.uid}") for u in utts]
                     for s, utts in splits.items()}
        if not any(out[name].values()):
            raise DataError(f"{root}: corpus {name!r} has no utterances")
    return out


def _sample(utts: Sequence[Utterance], n: int, seed: int) -> list[Utterance]:
    if len(utts) <= n:
        return list(utts)
    idx = np.random.default_rng(seed).choice(len(utts), size=n, replace=False)
    return [utts[i] for i in sorted(idx)]


def _load_waves(utts: Sequence[Utterance], budget_s: float, seed: int) -> list[torch.Tensor]:
    """Waveforms of a seeded random subset of ``utts`` totalling about ``budget_s`` seconds."""


    order = np.random.default_rng(seed).permutation(len(utts))
    waves: list[torch.Tensor] = []
    total = 0.0
    for i in tqdm(order, desc="loading audio", unit="clip", leave=False):
        try:
            w = load_utterance(utts[i])
        except AudioError as e:
            log.warning("skipping %s", e)
            continue
        waves.append(w)
        total += w.numel() / 16_000
        if total >= budget_s:
            break
    return waves


# ------------------------------------------------------------------------------- layer selection
def _frame_units(feats: Sequence[torch.Tensor], n_clusters: int, seed: int) -> list[np.ndarray]:

    km = fit_kmeans(torch.cat(list(feats)).numpy(), n_clusters, seed=seed)
    return [km.predict(f).numpy() for f in feats]


def _aligned(utts: Sequence[Utterance], caller: str, hint: str = ""
             ) -> tuple[list[Utterance], dict[str, Any]]:
    """The utterances that carry phone alignments, and the alignments by uid (none: an error)."""

    alignments = alignments_by_uid(utts)
    if not alignments:
        raise DataError(f"{caller}: the utterances carry no phone alignments (spkit/alignments.jsonl){hint}")
    return [u for u in utts if u.uid in alignments], alignments


def _score_units(utts: Sequence[Utterance], feats: Sequence[torch.Tensor], alignments: Mapping[str, Any],
                 n_clusters: int, seed: int) -> dict[str, float]:
    """Fit k-means with ``n_clusters`` on ``feats`` (one per utterance) and score its frame units."""

    units = _frame_units(feats, n_clusters, seed)
    rep = unit_report({u.uid: x.tolist() for u, x in zip(utts, units)}, alignments)
    return {"phone_pnmi": rep["phones"]["pnmi"], "phone_purity": rep["phones"]["purity"],
            "cluster_purity": rep["phones"]["cluster_purity"], "word_pnmi": rep["words"]["pnmi"],
            "units_per_second": rep["sequence"]["dedup_units_per_second"]}


def compare_layers(extractors: Mapping[str, Any], utts: Sequence[Utterance], n_clusters: int,
                   seed: int = 0) -> list[dict[str, Any]]:
    """Unit quality of each candidate on ``utts`` (which carry phone alignments).

    ``extractors``: ``{name: extractor}``; an extractor with ``extract_layers`` is scored at every
    layer. For each (candidate, layer), k-means with ``n_clusters`` is fitted on the frames of
    ``utts`` and the units are scored against phones and words (:func:`spkit.units.metrics.unit_report`).
    Returns one row per (candidate, layer), best phone PNMI first.
    """


    utts, alignments = _aligned(utts, "compare_layers", "; give a layer explicitly")
    waves = [load_utterance(u) for u in utts]
    rows: list[dict[str, Any]] = []
    for name, ex in extractors.items():
        with torch.inference_mode():
            if hasattr(ex, "extract_layers"):
                per = [ex.extract_layers(w) for w in tqdm(waves, desc=f"features {name}", leave=False)]
                if getattr(ex, "cmvn", False):  # score the layers as k-means will see them
                    per = [clip_cmvn(p) for p in per]
                layers = {i + 1: [p[i] for p in per] for i in range(per[0].shape[0])}
            else:
                layers = {0: [ex.extract(w) for w in waves]}
        for layer, feats in layers.items():
            rows.append({"candidate": name, "layer": layer,
                         **_score_units(utts, feats, alignments, n_clusters, seed)})
    rows.sort(key=lambda r: -r["phone_pnmi"])
    return rows


# ---------------------------------------------------------------------------------------- driver
def discover_units(corpora: Mapping[str, Any], run_dir: str | os.PathLike, config: UnitDiscoveryConfig,
                   progress: bool = True) -> dict[str, Any]:
    """Run unit discovery (see the module docstring); returns the report also written to
    ``units/metrics.json``. Rerunning reuses finished checkpoints, k-means and cached units."""

    if config.units not in ("ssl", "oracle"):
        raise ValueError(f"units={config.units!r}: choose ssl or oracle")
    if config.units == "oracle":
        return discover_oracle_units(corpora, run_dir, config, progress)
    t_start = time.perf_counter()
    config = resolve_base(config)
    layout = RunLayout.at(run_dir)
    layout.units.mkdir(parents=True, exist_ok=True)
    data = load_corpora(corpora)
    train_all = [u for c in data.values() for u in c.get("train", [])]
    if not train_all:
        raise DataError(f"no training utterances in corpora {sorted(corpora)}")
    report: dict[str, Any] = {"config": dataclasses.asdict(config), "corpora": {
        n: {s: len(v) for s, v in c.items()} for n, c in data.items()}}
    timings: dict[str, float] = {}

    # 1. the dense model
    checkpoint = config.checkpoint
    layer = config.layer
    if config.features == "tiny_hubert" and checkpoint is None:
        t0 = time.perf_counter()
        waves = _load_waves(train_all, config.pretrain_audio_s, config.seed)
        # The pretraining targets' K defaults to the units' K; pretrain_options may set it apart
        # (HuBERT: 100 clusters of MFCCs in iteration 1, whatever K the units use afterwards).
        pcfg = PretrainConfig(**{"num_clusters": config.n_clusters, "max_steps": config.pretrain_steps,
                                 "max_seconds": config.pretrain_max_seconds, "seed": config.seed,
                                 "warmup_steps": min(100, max(1, config.pretrain_steps // 10)),
                                 "kmeans_max_frames": config.kmeans_max_frames, **config.pretrain_options})
        mcfg = TinyHubertConfig(**{**dataclasses.asdict(TinyHubertConfig()), **config.model,
                                   "num_classes": pcfg.num_clusters})
        results = pretrain_iterations(waves, layout.hubert, config.iterations, pcfg, mcfg, progress=progress)
        del waves
        report["pretrain"] = results
        timings["pretrain_s"] = time.perf_counter() - t0
        candidates = {f"iter{i + 1}": load_extractor("tiny_hubert", checkpoint=r["path"],
                                                     cmvn=config.feature_cmvn)
                      for i, r in enumerate(results)}
        if layer is None:
            t0 = time.perf_counter()
            sel_utts = _sample(data.get("kws", next(iter(data.values()))).get("valid", train_all),
                               config.select_utts, config.seed)
            rows = compare_layers(candidates, sel_utts, config.n_clusters, config.seed)
            report["layer_selection"] = rows
            best = rows[0]
            checkpoint, layer = results[int(best["candidate"][4:]) - 1]["path"], best["layer"]
            timings["select_s"] = time.perf_counter() - t0
        else:
            checkpoint = results[-1]["path"]
    extractor = load_extractor(config.features, checkpoint=checkpoint,
                               layer=layer if config.features in ("hubert", "tiny_hubert") else None,
                               cmvn=config.feature_cmvn)
    layer = getattr(extractor, "layer", None)
    report["unit_model"] = {"features": config.features, "checkpoint": checkpoint, "layer": layer}

    # 2. k-means
    t0 = time.perf_counter()
    if config.kmeans_path is not None:
        kmeans = KMeansModel.load(config.kmeans_path)
        kmeans.check_dim(extractor.dim, f"features of {config.features}")
        kmeans.save(layout.kmeans)
    elif layout.kmeans.exists() and _same_unit_model(layout, extractor):
        kmeans = KMeansModel.load(layout.kmeans)
    else:
        kmeans = fit_kmeans_on_corpus(_sample(train_all, 4000, config.seed), extractor, config.n_clusters,
                                      max_frames=config.kmeans_max_frames, seed=config.seed,
                                      progress=progress)
        kmeans.save(layout.kmeans)
    encoder = SpeechEncoder(extractor, kmeans)
    save_unit_model(layout.root, encoder, config.features, checkpoint)
    timings["kmeans_s"] = time.perf_counter() - t0

    # 3. quantize every split of every corpus
    t0 = time.perf_counter()
    cache = layout.units / "cache"
    metrics: dict[str, Any] = {}
    for name, splits in data.items():
        for split, utts in splits.items():
            if not utts:
                continue
            path = quantize_corpus(utts, encoder, layout.unit_dir(name), name=split,
                                   # equal-length clips batch unpadded for any extractor; padding-invariant
                                   # ones (the tiny HuBERT) batch clips of any length
                                   cache_dir=cache, progress=progress, batch_size=16)
            if split == "test":
                metrics[name] = unit_report(read_units(path), alignments_by_uid(utts))
    timings["quantize_s"] = time.perf_counter() - t0

    # 4. the MFCC baseline on the same test splits
    if config.mfcc_baseline:
        t0 = time.perf_counter()
        mfcc = load_extractor("mfcc")
        mfcc_train = _sample(data.get("kws", {}).get("train", train_all), 600, config.seed)
        km_mfcc = fit_kmeans_on_corpus(mfcc_train, mfcc, config.n_clusters,
                                       max_frames=config.kmeans_max_frames, seed=config.seed,
                                       progress=progress)
        report["mfcc_baseline"] = {}
        for name, splits in data.items():
            test = splits.get("test") or []
            if not test:
                continue
            path = quantize_corpus(test, SpeechEncoder(mfcc, km_mfcc), layout.units / "mfcc" / name,
                                   name="test", cache_dir=cache, progress=progress)
            report["mfcc_baseline"][name] = unit_report(read_units(path), alignments_by_uid(test))
        timings["mfcc_baseline_s"] = time.perf_counter() - t0
    report["metrics"] = metrics
    timings["total_s"] = time.perf_counter() - t_start
    report["timings"] = {k: round(v, 1) for k, v in timings.items()}
    write_json(layout.units / "metrics.json", json.loads(json.dumps(report, default=str)))
    return report


def discover_oracle_units(corpora: Mapping[str, Any], run_dir: str | os.PathLike, config: UnitDiscoveryConfig,
                          progress: bool = True) -> dict[str, Any]:
    """The oracle topline's units (see the module docstring): the phone inventory from the training split of
    ``config.oracle_inventory_from``, unit files of every split of every corpus, ``unit_model.json`` (kind
    ``oracle_phones``, with the downstream's SSL model), and a report (``units/metrics.json``: per corpus the
    test split's PNMI, which is 1 where no phone is unseen, and the frames per split that fell on the unseen
    unit). A clip without alignment is an error naming its file."""
    t_start = time.perf_counter()
    if config.base is None and config.checkpoint is None:
        config = dataclasses.replace(config, base=str(SHIPPED_BASE))
    config = resolve_base(config)
    layout = RunLayout.at(run_dir)
    layout.units.mkdir(parents=True, exist_ok=True)
    data = load_corpora(corpora)
    missing = [c for c in config.oracle_inventory_from if not data.get(c, {}).get("train")]
    if missing:
        raise DataError(f"oracle units: the phone inventory is built from the training split of {missing}, "
                        f"which the corpora {sorted(data)} lack (spkit run adds the pretraining corpus as "
                        f"{PRETRAIN!r} when units=oracle; notebooks: ensure_corpora(..., units='oracle'))")
    t0 = time.perf_counter()
    sources = config.oracle_inventory_from
    inventory = PhoneInventory.build([u for c in sources for u in data[c]["train"]], progress=progress)
    inventory = dataclasses.replace(inventory, sources=[
        {"corpus": c, "split": "train", "clips": len(data[c]["train"]), "folder": str(corpora[c])}
        for c in sources])
    timings = {"inventory_s": time.perf_counter() - t0}
    ssl = None
    if config.checkpoint is not None:  # the downstream baseline's frozen SSL model (oracle units have none)
        ssl = {"features": config.features, "checkpoint": config.checkpoint, "layer": config.layer,
               "cmvn": config.feature_cmvn, "source": config.base}
    save_oracle_unit_model(layout.root, inventory, ssl)
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {}
    coverage: dict[str, Any] = {}
    for name, splits in data.items():
        for split, utts in splits.items():
            if not utts:
                continue
            path = quantize_oracle(utts, inventory, layout.unit_dir(name), name=split, progress=progress)
            meta = read_json(path.with_suffix(".meta.json"))
            coverage.setdefault(name, {})[split] = {
                "frames": meta["n_frames"], "unseen_frames": meta["unseen_frames"],
                "unseen_phones": meta["unseen_phones"], "silence_frames": meta["silence_frames"]}
            if split == "test":
                metrics[name] = unit_report(read_units(path), alignments_by_uid(utts))
    timings["units_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    report = {"config": dataclasses.asdict(config), "units": ORACLE_KIND, "label": ORACLE_LABEL,
              "corpora": {n: {s: len(v) for s, v in c.items()} for n, c in data.items()},
              "unit_model": {"kind": ORACLE_KIND, "label": ORACLE_LABEL, "n_units": inventory.n_units,
                             "inventory_from": list(config.oracle_inventory_from),
                             "downstream_features": ssl},
              "oracle": {"inventory": inventory.summary(), "coverage": coverage},
              "metrics": metrics, "timings": {k: round(v, 1) for k, v in timings.items()}}
    write_json(layout.units / "metrics.json", json.loads(json.dumps(report, default=str)))
    return report


def oracle_markdown(report: Mapping[str, Any]) -> str:
    """The oracle run's label, its phone inventory and, per corpus and split, the share of frames that fell
    on the reserved unseen unit (and which phones did), as Markdown for notebook 01."""
    oracle = report["oracle"]
    inv = oracle["inventory"]
    src = ", ".join(f"{s['corpus']} {s['split']} ({s['clips']} clips)" for s in inv["sources"])
    lines = [f"**{report['label']}**. Phone inventory from {src}: {inv['n_phones']} phones + silence (unit "
             f"{inv['silence_unit']}) + unseen (unit {inv['unseen_unit']}) = K={inv['n_units']}.", "",
             "| corpus | split | frames | silence | unseen-phone frames | unseen phones |",
             "|---|---|---:|---:|---:|---|"]
    for name, splits in oracle["coverage"].items():
        for split, c in splits.items():
            unseen = ", ".join(f"{p} ({n})" for p, n in list(c["unseen_phones"].items())[:8]) or "–"
            n = max(1, c["frames"])
            lines.append(f"| {name} | {split} | {c['frames']} | {100 * c['silence_frames'] / n:.1f} % "
                         f"| {100 * c['unseen_frames'] / n:.2f} % | {unseen} |")
    return "\n".join(lines)


def _same_unit_model(layout: RunLayout, extractor: Any) -> bool:
    path = layout.units / "unit_model.json"
    return path.exists() and read_json(path).get("extractor_fingerprint") == extractor.fingerprint


def sweep_clusters(extractor: Any, utts: Sequence[Utterance], ks: Sequence[int], seed: int = 0
                   ) -> list[dict[str, Any]]:
    """Unit quality of one extractor for several K (phone PNMI/purity, word PNMI, units per second);
    the features are extracted once."""

    utts, alignments = _aligned(utts, "sweep_clusters")
    with torch.inference_mode():
        feats = [extractor.extract(load_utterance(u)) for u in utts]
    return [{"k": k, **_score_units(utts, feats, alignments, k, seed)} for k in ks]


def ensure_corpora(corpora: Mapping[str, Any] | None, preset: str, seed: int = 0,
                   kinds: Sequence[str] = ("kws", "intent", "lid", "asr", "sf"),
                   data_root: str | os.PathLike | None = None, units: str | None = None) -> dict[str, str]:
    """The corpora a notebook works on: ``corpora`` when given (``spkit run`` passes them), else the
    embedded corpora of ``preset``, synthesized now if missing (a finished corpus is not redone).

    With oracle units (``units="oracle"`` or preset ``oracle``) the pretraining corpus joins them as
    ``pretrain`` (the one spkit-base was trained on, seed :data:`~spkit.presets.PRETRAIN_CORPUS_SEED`),
    synthesized now if missing: its training split builds the phone inventory and its units train the uLM."""
    oracle = uses_oracle_units(preset, units)
    if preset == "paper" and oracle:
        raise DataError("oracle units need the synthesizer's phone alignments; the paper preset reads real "
                        "data sets, which have none")
    root = Path(data_root) if data_root else default_data_root()
    if corpora:
        out = {k: str(v) for k, v in corpora.items()}
    elif preset == "paper":
        raise DataError("the paper preset needs the real corpora: set the notebook's `corpora` parameter "
                        "to {'kws': <speech_commands_v0.01>, 'intent': <fluent_speech_commands_dataset>}")
    else:
        size = corpus_preset(preset)
        out = {}
        for kind in kinds:
            folder = corpus_dir(root, kind, size, seed)
            out[kind] = str(synthesize_corpus(kind, folder, preset=size, seed=seed))
    if oracle and PRETRAIN not in out:
        size = corpus_preset(preset)
        folder = pretrain_corpus_dir(root, size, PRETRAIN_CORPUS_SEED)
        out[PRETRAIN] = str(synthesize_corpus("pretrain", folder, preset=size, seed=PRETRAIN_CORPUS_SEED))
    return out

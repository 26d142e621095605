"""The unit LM stage, end to end: what notebook 02 runs.

Embedded path: pretrain spkit's uLM on the deduplicated training units of every corpus in the run
(validation on the corpora's valid splits, i.e. unseen speakers), then export it as a fairseq/GSLM
folder as well. Real path: load GSLM's uLM folder (``checkpoint_best.pt`` + ``dict.txt``) unchanged.

Oracle path (the run's units are the oracle topline's, ``unit_model.json`` kind ``oracle_phones``): the uLM
is trained on the *pretraining corpus's* oracle units (``units/pretrain``) by spkit-base's own uLM stage
(:func:`spkit.recipes.spkit_base.train_ulm` with ``BaseRecipe.ulm`` of the matching size: ``ulm_small`` at
``default``), as spkit-base's uLM is trained on its units of that corpus.

Outputs (:class:`spkit.layout.RunLayout`): ``ulm/checkpoint_best.pt`` (spkit format) with
``history.json``, ``ulm/train_units.txt`` / ``ulm/valid_units.txt`` (the GSLM-format data it saw),
``ulm/fairseq/{checkpoint_best.pt,dict.txt}`` (the same weights for fairseq), ``ulm/report.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spkit.artifacts import load_run_ulm
from spkit.data.base import DataError
from spkit.io import read_json, write_json, write_text
from spkit.layout import RunLayout
from spkit.presets import PRETRAIN_CORPUS, SHIPPED_BASE
from spkit.recipes.spkit_base import load_base, preset_recipe, train_ulm, ulm_train_config
from spkit.ulm.dictionary import UnitDictionary, check_unit_vocabulary
from spkit.ulm.fairseq_io import save_fairseq_ulm
from spkit.ulm.train import ULMTrainConfig, train
from spkit.units.oracle import ORACLE_KIND, ORACLE_LABEL

PRETRAIN = PRETRAIN_CORPUS  # units/pretrain: what the oracle uLM trains on

log = logging.getLogger(__name__)


@dataclass
class UnitLMConfig:
    """Settings of :func:`build_unit_lm`.

    Attributes:
        units: None: what the run's units are (``unit_model.json``); ``oracle``: the oracle topline's uLM,
            trained by spkit-base's uLM recipe ``oracle_recipe`` on ``corpora`` (default: the pretraining
            corpus), and an error when the run's units are not oracle units. ``base`` is ignored for them.
        oracle_recipe: the spkit-base recipe preset (``default``, ``smoke``) whose ``ulm`` trains the oracle
            uLM.
        base: an spkit-base folder: its uLM (``base/ulm``, a fairseq/GSLM folder) is loaded, not trained.
        gslm_checkpoint: a GSLM/fairseq uLM (file or folder with ``dict.txt``) to load instead of
            training one (trusted files only: full unpickling).
        model: spkit config name (``tiny``, ``small``, ``transformer_lm``, ``transformer_lm_big``).
        model_overrides: ULMConfig fields to change.
        max_steps, max_cpu_seconds, batch_size, lr, warmup_steps, eval_every: training budget and
            optimiser (see :class:`spkit.ulm.train.ULMTrainConfig`).
        corpora: which corpora's units train the LM (None: all in the run).
        export_fairseq: also write the fairseq/GSLM folder (needs fairseq).
        seed: init and data order.
    """

    units: str | None = None
    oracle_recipe: str = "default"
    base: str | None = None
    gslm_checkpoint: str | None = None
    model: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=lambda: {"dropout": 0.1})
    max_steps: int = 2500
    max_cpu_seconds: float | None = None  # a CPU-time cap makes results machine-dependent
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 200
    eval_every: int = 250
    corpora: Sequence[str] | None = None
    export_fairseq: bool = True
    seed: int = 0


PRESETS: dict[str, UnitLMConfig] = {
    "smoke": UnitLMConfig(model_overrides={"dim": 32, "n_layers": 2, "n_heads": 2, "ffn_dim": 64},
                          max_steps=30, max_cpu_seconds=None, batch_size=8, warmup_steps=5, eval_every=10,
                          oracle_recipe="smoke"),
    # 1000 steps (about 1.3 k tokens a step over the four corpora's units) keep the main job under 30 minutes
    "default": UnitLMConfig(base=str(SHIPPED_BASE)),
    "full": UnitLMConfig(base=str(SHIPPED_BASE)),  # default's models; a larger prompting budget
    "scratch": UnitLMConfig(max_steps=1000),
    "paper": UnitLMConfig(model="transformer_lm_big", export_fairseq=False),
    # the oracle topline: spkit-base's uLM recipe (BaseRecipe.ulm) on the pretraining corpus's units
    "oracle": UnitLMConfig(units="oracle"),
}


def preset_config(preset: str, **overrides: Any) -> UnitLMConfig:
    """The preset's config with ``overrides`` (unknown names are an error)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    config = dataclasses.replace(PRESETS[preset], **overrides)
    if config.units not in (None, "ssl", "oracle"):
        raise ValueError(f"units={config.units!r}: choose ssl or oracle (None: the run's)")
    if config.units == "oracle":  # the oracle uLM is trained here; no spkit-base uLM is loaded
        config = dataclasses.replace(config, base=None)
    return config


def unit_corpora(layout: RunLayout) -> list[str]:
    """Names of the corpora quantized in this run (folders of ``units/`` holding ``train.txt``)."""
    if not layout.units.is_dir():
        raise DataError(f"{layout.units}: no units in this run (run unit discovery / notebook 01 first)")
    return sorted(p.parent.name for p in layout.units.glob("*/train.txt") if p.parent.name != "mfcc")


def gather_units(layout: RunLayout, split: str, corpora: Sequence[str]) -> Path:
    """Concatenate ``units/<corpus>/<split>.txt`` of ``corpora`` into ``ulm/<split>_units.txt``."""
    lines: list[str] = []
    for name in corpora:
        path = layout.unit_dir(name) / f"{split}.txt"
        if not path.exists():
            raise DataError(f"{path}: missing unit file for corpus {name!r}")
        lines.extend(ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip())
    if not lines:
        raise DataError(f"no {split} units in {[str(layout.unit_dir(c)) for c in corpora]}")
    return write_text(layout.ulm / f"{split}_units.txt", "\n".join(lines) + "\n")


def build_unit_lm(run_dir: str | os.PathLike, config: UnitLMConfig, progress: bool = True) -> dict[str, Any]:
    """Train (or load) the run's uLM; returns a report also written to ``ulm/report.json``.

    A rerun resumes an interrupted training and does nothing once it finished.
    """

    layout = RunLayout.at(run_dir)
    layout.ulm.mkdir(parents=True, exist_ok=True)
    record_file = layout.units / "unit_model.json"
    record = read_json(record_file) if record_file.exists() else {}
    oracle = record.get("kind") == ORACLE_KIND
    if config.units == "oracle" and not oracle:
        kind = record.get("kind", "ssl_kmeans") if record else "missing"
        raise DataError(f"{layout.units / 'unit_model.json'}: units=oracle, but the run's units are {kind} "
                        "(run notebook 01 with units=oracle first)")
    if config.units == "ssl" and oracle:
        raise DataError(f"{layout.units / 'unit_model.json'}: units=ssl, but the run's units are the "
                        f"{ORACLE_LABEL}")
    if oracle:
        if config.gslm_checkpoint is not None:
            raise DataError(f"gslm_checkpoint={config.gslm_checkpoint}: the oracle topline trains its own "
                            "uLM on oracle units (a GSLM uLM speaks HuBERT units)")
        return _oracle_unit_lm(layout, config, record, progress)
    if config.base is not None and config.gslm_checkpoint is None:
        config = dataclasses.replace(config, gslm_checkpoint=load_base(config.base)["ulm"])
    if config.gslm_checkpoint is not None:
        model, dictionary = load_run_ulm(run_dir, config.gslm_checkpoint)
        unit_model = layout.units / "unit_model.json"
        if unit_model.exists():  # the run's quantizer must speak the uLM's units
            gslm = Path(config.gslm_checkpoint)
            km = read_json(unit_model)
            check_unit_vocabulary(int(km["n_clusters"]), layout.root / km["kmeans"], dictionary,
                                  (gslm if gslm.is_dir() else gslm.parent) / "dict.txt")
        report = {"source": str(config.gslm_checkpoint), "num_parameters": model.num_parameters(),
                  "fingerprint": model.fingerprint(), "vocab_size": len(dictionary)}
        write_json(layout.ulm / "report.json", report)
        return report

    km = read_json(layout.units / "unit_model.json")
    corpora = list(config.corpora or unit_corpora(layout))
    train_file = gather_units(layout, "train", corpora)
    valid_file = gather_units(layout, "valid", corpora)
    # A fixed dictionary over all K units (token = 4 + unit id): every unit has a token even when a
    # rare one is missing from the training data, and verbalizers can name any unit.
    dictionary = UnitDictionary.from_units(range(int(km["n_clusters"])))
    tcfg = ULMTrainConfig(model=config.model, model_overrides=dict(config.model_overrides),
                       max_steps=config.max_steps, max_cpu_seconds=config.max_cpu_seconds,
                       batch_size=config.batch_size, lr=config.lr, warmup_steps=config.warmup_steps,
                       eval_every=config.eval_every, save_every=config.eval_every, seed=config.seed)
    history_file = layout.ulm / "history.json"
    last = layout.ulm / "checkpoint_last.pt"
    if history_file.exists() and last.exists() and _finished(history_file, tcfg):
        summary = read_json(history_file)["summary"]
    else:
        summary = train(tcfg, train_file, valid_file, layout.ulm, resume=last.exists(), progress=progress,
                        dictionary=dictionary)
    report = {"source": "trained here", "corpora": corpora, "train_config": dataclasses.asdict(tcfg),
              **summary}
    return _finish(layout, config, report)


def _finish(layout: RunLayout, config: UnitLMConfig, report: dict[str, Any]) -> dict[str, Any]:
    """Export the trained uLM as a fairseq/GSLM folder (``config.export_fairseq``); write ``report.json``."""
    if config.export_fairseq:
        model, dictionary = load_run_ulm(layout.root)
        save_fairseq_ulm(model, dictionary, layout.ulm / "fairseq")
        report["fairseq_export"] = str(layout.ulm / "fairseq")
    write_json(layout.ulm / "report.json", report)
    return report


def _oracle_unit_lm(layout: RunLayout, config: UnitLMConfig, unit_model: dict[str, Any],
                    progress: bool) -> dict[str, Any]:
    """The oracle topline's uLM: spkit-base's uLM stage (:func:`spkit.recipes.spkit_base.train_ulm`, its
    ``BaseRecipe.ulm`` of ``config.oracle_recipe``) on the oracle units of ``config.corpora`` (default: the
    pretraining corpus), validation on its held-out speakers. Resumes; does nothing once finished."""
    recipe = dataclasses.replace(preset_recipe(config.oracle_recipe), seed=config.seed)
    tcfg = ulm_train_config(recipe)
    corpora = list(config.corpora or [PRETRAIN])
    train_file = gather_units(layout, "train", corpora)
    valid_file = gather_units(layout, "valid", corpora)
    history_file = layout.ulm / "history.json"
    last = layout.ulm / "checkpoint_last.pt"
    if history_file.exists() and last.exists() and _finished(history_file, tcfg):
        summary = read_json(history_file)["summary"]
    else:
        summary = train_ulm(recipe, train_file, valid_file, layout.ulm,
                                       int(unit_model["n_clusters"]), progress=progress)
    report = {"source": "trained here", "units": ORACLE_KIND, "label": ORACLE_LABEL,
              "recipe": f"spkit-base {config.oracle_recipe} recipe, BaseRecipe.ulm", "corpora": corpora,
              "train_config": dataclasses.asdict(tcfg), **summary}
    return _finish(layout, config, report)


def _finished(history_file: Path, tcfg: Any) -> bool:
    """True when a previous training with the same settings reached its step or CPU budget."""
    summary = read_json(history_file).get("summary", {})
    if summary.get("steps", 0) >= tcfg.max_steps:
        return True
    return tcfg.max_cpu_seconds is not None and summary.get("cpu_seconds", 0) >= tcfg.max_cpu_seconds


def continuation_demo(model: Any, dictionary: Any, units: Sequence[int], prompt_frac: float = 0.5,
                      n_samples: int = 2, temperature: float = 0.8, top_k: int | None = 20,
                      seed: int = 0) -> dict[str, list[int]]:
    """Continue the first ``prompt_frac`` of a deduplicated unit sequence with the LM.

    Returns ``{"prompt", "real", "greedy", "sample1", ...}`` as unit-id lists (the real continuation is
    the rest of the sequence, for comparison).
    """
    cut = max(1, int(len(units) * prompt_frac))
    prompt, real = list(units[:cut]), list(units[cut:])
    tokens = torch.tensor([[dictionary.eos, *dictionary.encode([str(u) for u in prompt], unk=True)]])
    n_new = max(len(real), 5)
    out = {"prompt": prompt, "real": real}
    with torch.inference_mode():
        g = model.generate(tokens, n_new, greedy=True)
        out["greedy"] = _to_units(dictionary, g[0, tokens.shape[1]:].tolist())
        gen = torch.Generator().manual_seed(seed)
        for i in range(n_samples):
            s = model.generate(tokens, n_new, temperature=temperature, top_k=top_k, generator=gen)
            out[f"sample{i + 1}"] = _to_units(dictionary, s[0, tokens.shape[1]:].tolist())
    return out


def _to_units(dictionary: Any, indices: Sequence[int]) -> list[int]:
    return [int(u) for u in dictionary.decode(indices) if u.isdigit()]

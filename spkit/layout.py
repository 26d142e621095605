"""Where each stage of a run writes its artifacts, so notebooks and commands find each other's
outputs by name rather than by convention scattered through the code.

A run folder (``spkit run --out RUN``) looks like::

    RUN/
      notebooks/             executed notebooks (papermill outputs, tracebacks included)
      figures/               plotly figures as offline HTML (and PNG when Chromium is present)
      hubert/                the HuBERT trained here: iter1.pt, iter2.pt, report.json
      units/                 km.bin (GSLM format), metrics.json, <corpus>/<split>.{txt,jsonl}
      ulm/                   checkpoint_best.pt + dict.txt (fairseq GSLM layout), train_log.jsonl
      prompts/<task>/<method>/seed<N>/prompt.pt   prompt files (kilobytes)
      results.json, results.md, index.html
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    """Paths inside one run folder."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike) -> RunLayout:
        return cls(Path(root).resolve())

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def hubert(self) -> Path:
        return self.root / "hubert"

    @property
    def units(self) -> Path:
        return self.root / "units"

    @property
    def kmeans(self) -> Path:
        return self.units / "km.bin"

    def unit_dir(self, corpus: str) -> Path:
        """Quantized units of one corpus; files are named by split (``train.txt``, ``train.jsonl``...)."""
        return self.units / corpus

    @property
    def ulm(self) -> Path:
        return self.root / "ulm"

    def prompt_dir(self, task: str, method: str, seed: int) -> Path:
        return self.root / "prompts" / task / method / f"seed{seed}"

    @property
    def results_json(self) -> Path:
        return self.root / "results.json"

    @property
    def results_md(self) -> Path:
        return self.root / "results.md"

    @property
    def index_html(self) -> Path:
        return self.root / "index.html"


REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_root() -> Path:
    """Where synthesized corpora live, shared between runs (``SPKIT_DATA`` overrides)."""
    return Path(os.environ.get("SPKIT_DATA", REPO_ROOT / "data" / "corpora"))


def corpus_dir(data_root: Path, kind: str, preset: str, seed: int) -> Path:
    """The folder of one synthesized corpus: ``<data_root>/<preset>-seed<seed>/<kind>``."""
    return data_root / f"{preset}-seed{seed}" / kind


def pretrain_corpus_dir(data_root: Path, preset: str, seed: int) -> Path:
    """The folder of a synthesized pretraining corpus (``spkit synth pretrain``, spkit-base's and the oracle
    topline's): ``<data_root>/pretrain-<preset>-seed<seed>``."""
    return Path(data_root) / f"pretrain-{preset}-seed{seed}"

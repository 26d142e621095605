"""Load what a run folder holds, for what reads trained artifacts: ``spkit predict``, the demo, the analyses.

One small module below ``prompt/``, ``analysis/`` and the demo (it imports only ``ulm/`` and below), so none
of them reaches up into the recipes for a run's files:

* the unit model: :meth:`spkit.units.encoder.SpeechEncoder.from_run` (``RUN/units/unit_model.json``);
* the uLM: :func:`load_run_ulm` (``RUN/ulm``: the uLM trained in the run, or the GSLM / spkit-base one its
  ``report.json`` names);
* the prompt files: :func:`prompt_files` (``RUN/prompts/<task>/<method>/seed<N>/prompt.pt``);
* the task data: :func:`task_unit_dir` (``RUN/units/<corpus>``, the corpus a task reads, :data:`TASK_CORPUS`);

(``RUN/results.json`` is read by :func:`spkit.prompt.results.load_results`, in the layer that writes it.)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from spkit.data.base import DataError
from spkit.io import read_json
from spkit.layout import RunLayout
from spkit.ulm.dictionary import UnitDictionary
from spkit.ulm.fairseq_io import load_fairseq_ulm
from spkit.ulm.model import UnitLM
from spkit.ulm.train import load_ulm

PROMPT_FILE = "prompt.pt"
"""The file name of a trained prompt inside ``RUN/prompts/<task>/<method>/seed<N>/``."""

TASK_CORPUS = {"kws": "kws", "intent": "intent", "lid": "lid", "asr": "asr", "sf": "sf"}
"""Which corpus of the run (``RUN/units/<corpus>``) each task reads."""


def task_unit_dir(run: str | os.PathLike, task: str) -> Path:
    """``RUN/units/<corpus>``: the unit files (``<split>.txt``/``.jsonl``) of ``task``'s corpus."""
    if task not in TASK_CORPUS:
        raise DataError(f"unknown task {task!r}; choose from {sorted(TASK_CORPUS)}")
    return RunLayout.at(run).unit_dir(TASK_CORPUS[task])


def load_run_ulm(run: str | os.PathLike, gslm_checkpoint: str | os.PathLike | None = None,
                 device: str = "cpu") -> tuple[UnitLM, UnitDictionary]:
    """``(UnitLM in eval mode, UnitDictionary)`` of a run: a given GSLM checkpoint (fairseq format), else the
    run's own ``ulm/checkpoint_best.pt`` (spkit format), else the source its ``ulm/report.json`` names."""
    layout = RunLayout.at(run)
    if gslm_checkpoint is None:
        rep = layout.ulm / "report.json"
        if rep.exists() and read_json(rep).get("source") not in (None, "trained here"):
            gslm_checkpoint = read_json(rep)["source"]
    if gslm_checkpoint is not None:
        model, dictionary = load_fairseq_ulm(gslm_checkpoint, map_location=device)
    else:
        if not any((layout.ulm / f).exists() for f in ("checkpoint_best.pt", "checkpoint_last.pt")):
            raise DataError(f"{layout.ulm}: no uLM in this run (run notebook 02 first)")
        model, dictionary = load_ulm(layout.ulm, map_location=device)
    return model.eval(), dictionary


@dataclass(frozen=True)
class PromptFile:
    """One trained prompt of a run: ``RUN/prompts/<task>/<method>/seed<seed>/prompt.pt``."""

    task: str
    method: str
    seed: int
    path: Path


def prompt_files(run: str | os.PathLike, task: str | None = None, method: str | None = None
                 ) -> list[PromptFile]:
    """Every prompt file of the run (of ``task`` and ``method`` when given), sorted by task, method, seed.

    Only ``seed<N>`` folders that hold a ``prompt.pt`` count; nothing is read (see
    :func:`spkit.prompt.checkpoint.read_prompt_file` for that).
    """
    root = RunLayout.at(run).root / "prompts"
    out = []
    for p in root.glob(f"{task or '*'}/{method or '*'}/seed*/{PROMPT_FILE}"):
        m = re.fullmatch(r"seed(\d+)", p.parent.name)
        if m:
            out.append(PromptFile(p.parent.parent.parent.name, p.parent.parent.name, int(m.group(1)), p))
    return sorted(out, key=lambda f: (f.task, f.method, f.seed))


"""Prompt a frozen uLM into a classifier from unit sequences in memory: no unit files, no run folder.

The notebooks and ``spkit run`` read a task from a run's unit files (:func:`spkit.prompt.train.prepare_task`);
a script that already holds its examples (units from :meth:`spkit.units.encoder.SpeechEncoder.encode` and a
label each) goes through :func:`prompt_classifier`, which builds the same pieces the runs use (the task spec
and verbalizer from the training examples alone, the collator, the prompted uLM) and trains them with the same
:func:`~spkit.prompt.train.train` and stopping rule::

    clf = prompt_classifier(lm, dictionary, [(units, "yes"), ...], [(units, "no"), ...])
    clf.predict(units)   # -> "yes": the most probable label (constrained scoring, as ``spkit predict``)

The README's Python quickstart calls it; ``tests/test_readme_quickstart.py`` runs that quickstart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from spkit.prompt.decode import score_labels
from spkit.prompt.model import PromptConfig, PromptedULM, activation_batch, build_prompted
from spkit.prompt.spec import TaskError, TaskExample
from spkit.prompt.tasks import Collator, build_spec, check_labels
from spkit.prompt.train import TrainConfig, TrainResult, train
from spkit.prompt.verbalizer import build_verbalizer
from spkit.ulm.dictionary import UnitDictionary
from spkit.ulm.model import UnitLM

Labelled = Sequence[tuple[Sequence[int], str]]
"""``[(units, label), ...]``: deduplicated unit ids of one clip and its label."""


def labelled_examples(pairs: Labelled, split: str) -> list[TaskExample]:
    """``(units, label)`` pairs -> :class:`TaskExample` s of ``split`` (uids ``<split>-<i>``, no audio
    file)."""
    return [TaskExample(uid=f"{split}-{i}", path="", split=split, speaker="", units=[int(u) for u in units],
                        label=str(label)) for i, (units, label) in enumerate(pairs)]


@dataclass
class PromptClassifier:
    """A trained prompt on a frozen uLM, with what it needs to classify new unit sequences.

    Attributes:
        model: the prompted uLM (the frozen uLM, the trained prompt, separator and verbalizer).
        collator: turns examples into token batches (the task spec and verbalizer of ``model``).
        result: the training log, best epoch and stop reason (:class:`~spkit.prompt.train.TrainResult`).
    """

    model: PromptedULM
    collator: Collator
    result: TrainResult

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.spec.labels

    def probabilities(self, units: Sequence[int]) -> dict[str, float]:
        """``{label: probability}`` of one clip's deduplicated units (constrained scoring over the labels)."""
        prefix_only = dataclasses.replace(self.collator, with_labels=False)
        batch = prefix_only(labelled_examples([(units, "")], "predict"))
        batch = batch.to(next(self.model.lm.parameters()).device)
        self.model.eval()
        with torch.inference_mode():
            probs = score_labels(self.model, batch)[0].float().cpu().tolist()
        return dict(zip(self.labels, probs))

    def predict(self, units: Sequence[int]) -> str:
        """The most probable label of one clip's deduplicated units."""
        scores = self.probabilities(units)
        return max(scores, key=scores.__getitem__)


def prompt_classifier(lm: UnitLM, dictionary: UnitDictionary, train_pairs: Labelled, valid_pairs: Labelled,
                      prompt: PromptConfig | None = None, config: TrainConfig | None = None, *,
                      task: str = "kws", verbalizer: str = "frequency", seed: int = 0,
                      progress: bool = False) -> PromptClassifier:
    """Train a prompt of ``prompt``'s form (default: SpeechPrompt's deep prompt) on the frozen ``lm`` to
    classify ``train_pairs``; the best epoch on ``valid_pairs`` is kept (``config``'s stopping rule).

    Args:
        lm, dictionary: a unit LM and its ``dict.txt`` (:func:`spkit.ulm.fairseq_io.load_fairseq_ulm`); ``lm``
            is frozen, not changed.
        train_pairs, valid_pairs: ``(units, label)`` pairs; the label set is the training pairs' alone (a
            validation label never seen in training is a :class:`~spkit.prompt.spec.TaskError`).
        task: a classification task name of :data:`~spkit.prompt.spec.TASKS` (``kws``, ``lid``: one label a
            clip; ``intent``: ``action|object|location``), which decides the label order and atoms.
        verbalizer: ``frequency`` (SpeechPrompt v1), ``random`` or ``learnable`` (v2).
        seed: the prompt's initialisation, the data order and the random verbalizer.
    """
    data = {split: labelled_examples(pairs, split) for split, pairs in (("train", train_pairs),
                                                                        ("valid", valid_pairs))}
    spec = build_spec(task, data["train"])
    if spec.kind != "classification":
        raise TaskError(f"prompt_classifier: task {task!r} is not a classification task")
    check_labels(spec, data)
    verb = build_verbalizer(verbalizer, spec, dictionary, data["train"], seed=seed)
    collator = Collator(spec, verb, dictionary, max_len=lm.cfg.max_positions)
    prompt = prompt or PromptConfig()
    init = activation_batch(collator, data["train"], seed=seed) if prompt.init == "activations" else None
    model = build_prompted(lm, spec, verb, prompt, init_batch=init, seed=seed)
    config = config or TrainConfig()
    result = train(model, data, collator, dataclasses.replace(config, seed=seed), progress=progress)
    return PromptClassifier(model, collator, result)

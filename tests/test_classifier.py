"""spkit.prompt.classifier: a prompt trained from (units, label) pairs in memory, as the README's quickstart
uses it."""
from __future__ import annotations

import random

import pytest
import torch

from spkit.prompt import PromptConfig, TaskError, TrainConfig, evaluate, prompt_classifier
from spkit.prompt.classifier import labelled_examples
from spkit.ulm import UnitDictionary, UnitLM, ulm_tiny

torch.set_num_threads(1)
N_UNITS = 12


def toy_pairs(n: int, seed: int) -> list[tuple[list[int], str]]:
    """A keyword after noise: clips of 2-5 random units 4..11, then unit 1 ('yes') or unit 2 ('no')."""
    rng = random.Random(seed)
    noise = [[rng.randrange(4, N_UNITS) for _ in range(rng.randrange(2, 6))] for _ in range(n)]
    return [([*units, 1 + i % 2], ("yes", "no")[i % 2]) for i, units in enumerate(noise)]


@pytest.fixture(scope="module")
def lm_and_dictionary() -> tuple[UnitLM, UnitDictionary]:
    torch.manual_seed(0)
    d = UnitDictionary.from_units(range(N_UNITS))
    return UnitLM(ulm_tiny(len(d), dim=64, n_layers=2, n_heads=4, ffn_dim=128)).eval(), d


def test_labelled_examples_keep_units_and_labels():
    ex = labelled_examples([([3, 4], "yes"), ((5,), "no")], "valid")
    assert [(e.uid, e.split, e.units, e.label) for e in ex] == [("valid-0", "valid", [3, 4], "yes"),
                                                               ("valid-1", "valid", [5], "no")]


def test_prompt_classifier_trains_the_prompt_only_and_predicts_as_the_evaluator(lm_and_dictionary):
    lm, d = lm_and_dictionary
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    train, valid, test = toy_pairs(64, 0), toy_pairs(16, 1), toy_pairs(24, 2)
    config = TrainConfig(max_epochs=6, patience=0, batch_size=16, lr=5e-2)
    clf = prompt_classifier(lm, d, train, valid, PromptConfig(length=4), config)
    assert clf.labels == ("yes", "no")  # SUPERB's keyword order
    assert clf.result.epochs_run == 6 and clf.model.num_trainable() > 0
    assert clf.result.log[-1]["train_loss"] < clf.result.log[0]["train_loss"]
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())  # only the prompt trained
    # one clip at a time, as the evaluator's constrained decoder scores the batch
    scored = evaluate(clf.model, labelled_examples(test, "test"), clf.collator, mode="constrained")
    assert [clf.predict(u) for u, _ in test] == [p["prediction"] for p in scored["predictions"]]
    probs = clf.probabilities(test[0][0])
    assert set(probs) == {"yes", "no"} and abs(sum(probs.values()) - 1) < 1e-5
    assert max(probs, key=probs.__getitem__) == clf.predict(test[0][0])


def test_prompt_classifier_refuses_what_it_cannot_train(lm_and_dictionary):
    lm, d = lm_and_dictionary
    with pytest.raises(TaskError, match="maybe"):  # a validation label never seen in training
        prompt_classifier(lm, d, toy_pairs(4, 0), [([5, 6], "maybe")], config=TrainConfig(max_epochs=1))
    with pytest.raises(TaskError, match="not a classification task"):
        prompt_classifier(lm, d, [([5, 6], "ab")], [([5], "ab")], task="asr",
                          config=TrainConfig(max_epochs=1))

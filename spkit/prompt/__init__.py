"""Prompt tuning on the frozen unit LM (SpeechPrompt v1/v2 on GSLM).

Tasks become unit-to-unit generation (:mod:`spkit.prompt.tasks`); a verbalizer maps labels to unit tokens
(:mod:`spkit.prompt.verbalizer`); only the prompt, the separator embedding and (optionally) the verbalizer
train (:mod:`spkit.prompt.prompts`, :mod:`spkit.prompt.model`, :mod:`spkit.prompt.train`); scoring and
decoding are in :mod:`spkit.prompt.decode`; prompt files in :mod:`spkit.prompt.checkpoint`.

This package imports torch; the CLI modules import it lazily.
"""

from spkit.prompt.checkpoint import PromptFileError, load_prompt, save_prompt
from spkit.prompt.classifier import PromptClassifier, prompt_classifier
from spkit.prompt.decode import beam_decode, beam_search, evaluate, greedy_labels, score_labels
from spkit.prompt.model import PromptConfig, PromptedULM, activation_batch, build_prompted
from spkit.prompt.prompts import DeepPrompt, InputPrompt
from spkit.prompt.tasks import (
    TASKS,
    Collator,
    PromptBatch,
    TaskError,
    TaskExample,
    TaskSpec,
    build_spec,
    check_labels,
    load_task,
)
from spkit.prompt.train import TrainConfig, TrainResult, prepare_task, train
from spkit.prompt.verbalizer import Verbalizer, build_verbalizer

__all__ = ["TASKS", "Collator", "DeepPrompt", "InputPrompt", "PromptBatch", "PromptClassifier",
           "PromptConfig", "PromptFileError", "PromptedULM", "TaskError", "TaskExample", "TaskSpec",
           "TrainConfig", "TrainResult", "Verbalizer", "activation_batch", "beam_decode", "beam_search",
           "build_prompted", "build_spec", "build_verbalizer", "check_labels", "evaluate", "greedy_labels",
           "load_prompt", "load_task", "prepare_task", "prompt_classifier", "save_prompt", "score_labels",
           "train"]

"""Prompt convergence study: one deep-prompt run per call on a run folder's units, its validation metric after
every epoch (the convergence curve) and its test score, into ``OUT/<task>_<name>_s<seed>.json``.

usage: python scripts/prompt_convergence.py RUN TASK NAME SEED [key=value ...]

keys (defaults: the main job's prompt settings): verbalizer (frequency), lr (5e-2), epochs (30),
max_train (500), max_valid (150), batch (32), warmup (0), decay (none), head_lr_scale (1), reparam (MLP
width; none), reparam_lr_scale (0.1), length (20), random_lm (0), patience (0: run every epoch), dropout,
init (activations), bf16 (1), ulm (a uLM folder when RUN has none; models/spkit-base/ulm), out
(runs/convergence).
The training and validation subsets are the main job's (spkit.recipes.prompting.fixed_subset streams 0, 1).
Records of the study: docs/results/prompt_convergence.json (docs/experiments/prompt-convergence.md).
"""
import dataclasses
import sys
import time
from pathlib import Path

import torch

from spkit.artifacts import TASK_CORPUS, load_run_ulm
from spkit.io import write_json
from spkit.layout import RunLayout
from spkit.prompt.decode import evaluate
from spkit.prompt.model import PromptConfig, activation_batch, build_prompted
from spkit.prompt.random_lm import control_seed, random_ulm
from spkit.prompt.train import TrainConfig, prepare_task, train
from spkit.recipes.prompting import fixed_subset

torch.set_num_threads(1)
run, task, name, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
kw = dict(a.split("=", 1) for a in sys.argv[5:])


def g(key, default, kind=str):
    return kind(kw[key]) if key in kw else default



layout = RunLayout.at(run)
try:
    lm, dictionary = load_run_ulm(layout.root)
except Exception:  # a run folder without its own uLM: spkit-base's
    from spkit.ulm.fairseq_io import load_fairseq_ulm
    lm, dictionary = load_fairseq_ulm(kw.pop("ulm", "models/spkit-base/ulm"))
data, collator = prepare_task(task, layout.unit_dir(TASK_CORPUS[task]), dictionary,
                              verbalizer=g("verbalizer", "frequency"), seed=seed,
                              max_len=lm.cfg.max_positions)
data = {**data, "train": fixed_subset(data["train"], g("max_train", 500, int), stream=0),
        "valid": fixed_subset(data["valid"], g("max_valid", 150, int), stream=1)}
collator = dataclasses.replace(collator, verbalizer=collator.verbalizer.fresh(seed))
base = random_ulm(lm, seed=control_seed(seed)) if g("random_lm", 0, int) else lm
pcfg = PromptConfig(method="deep_prompt", length=g("length", 20, int), init=g("init", "activations"),
                    reparam_hidden=g("reparam", None, int), dropout=g("dropout", None, float))
model = build_prompted(base, collator.spec, collator.verbalizer, pcfg,
                       init_batch=activation_batch(collator, data["train"], seed=seed), seed=seed)
tcfg = TrainConfig(lr=g("lr", 5e-2, float), batch_size=g("batch", 32, int), max_epochs=g("epochs", 30, int),
                   patience=g("patience", 0, int), seed=seed, metric_every=0, length_buckets=10,
                   cpu_bf16=g("bf16", 1, int) == 1, warmup_steps=g("warmup", 0, int),
                   decay=g("decay", "none"), head_lr_scale=g("head_lr_scale", 1.0, float),
                   reparam_lr_scale=g("reparam_lr_scale", 0.1, float))
t0 = time.time()
res = train(model, data, collator, tcfg, progress=False)
test = evaluate(model, data["test"], collator, batch_size=64, mode="greedy")["value"]
out = {"name": name, "task": task, "seed": seed, "kw": kw, "test": test, "best_epoch": res.best_epoch,
       "steps_per_epoch": res.log[0]["steps"], "seconds": time.time() - t0,
       "curve": [[r["epoch"], r["valid_metric"], r["train_loss"]] for r in res.log]}
out_dir = Path(kw.get("out", "runs/convergence"))
out_dir.mkdir(exist_ok=True, parents=True)
write_json(out_dir / f"{task}_{name}_s{seed}.json", out)
print(name, "test", round(test, 4), "best", res.best_epoch, "curve", [round(c[1], 3) for c in out["curve"]])

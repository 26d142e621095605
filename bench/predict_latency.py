"""Latency of :class:`spkit.prompt.predict.Predictor` on a 1 s clip (target: under 200 ms on the CPU).

Load once, then time ``Predictor.predict_file`` (read + resample + features + k-means + prompted uLM
scoring of every label) on a 1 s WAV, after warm-up calls; also times the stages apart. Two sources:

* ``--run RUN --task kws``: a real run folder (its extractor, km.bin, uLM and prompt);
* ``--demo`` (default when no ``--run``): a synthetic run folder of the CPU-scale sizes in a temporary
  folder: tiny HuBERT (default config: d=192, 4 layers, layer 2), K=100 k-means, uLM of ``--ulm-config``
  (default ``tiny``: d=128 x 4 layers), 12-class KWS deep prompt L=20. Random weights: latency does not
  depend on their values.

Usage::

    python bench/predict_latency.py                         # demo run, tiny uLM
    python bench/predict_latency.py --ulm-config transformer_lm_big
    python bench/predict_latency.py --run runs/default --task kws

Prints a table and writes ``bench/results/predict_latency.json`` (atomically). Exit 1 if the median is
over ``--budget-ms``.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
KWS12 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_unknown_", "_silence_")


def speechlike_clip(seed: int = 0, seconds: float = 1.0) -> np.ndarray:
    """A speech-like 16 kHz test signal: a random-rate chirp, syllable-rate amplitude modulation, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0, f1 = rng.uniform(150, 400), rng.uniform(1500, 4000)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)
    return (0.3 * env * np.sin(phase) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def build_demo_run(root: Path, ulm_config: str = "tiny", n_units: int = 100, prompt_length: int = 20) -> None:
    """A run folder with random-weight models of the CPU-scale sizes (see the module docstring)."""
    import torch

    from spkit.features.tiny_hubert import FORMAT, VERSION, TinyHubert, TinyHubertConfig, TinyHubertExtractor
    from spkit.io import torch_save
    from spkit.layout import RunLayout
    from spkit.prompt.checkpoint import save_prompt
    from spkit.prompt.model import PromptConfig, build_prompted
    from spkit.prompt.tasks import Collator, TaskExample, build_spec
    from spkit.prompt.verbalizer import build_verbalizer
    from spkit.ulm.dictionary import UnitDictionary
    from spkit.ulm.model import CONFIGS, UnitLM
    from spkit.ulm.train import CHECKPOINT_FORMAT
    from spkit.units.encoder import SpeechEncoder, save_unit_model
    from spkit.units.kmeans import KMeansModel

    torch.manual_seed(0)
    layout = RunLayout.at(root)
    cfg = TinyHubertConfig(num_classes=n_units)
    ckpt = layout.hubert / "iter2.pt"
    torch_save({"format": FORMAT, "version": VERSION, "config": dataclasses.asdict(cfg),
                "model": TinyHubert(cfg).state_dict()}, ckpt)
    ext = TinyHubertExtractor.from_checkpoint(ckpt, layer=2)
    rng = np.random.default_rng(0)
    frames = torch.cat([ext.extract(torch.from_numpy(speechlike_clip(seed))) for seed in range(8)])
    km = KMeansModel(frames[torch.randperm(frames.shape[0])[:n_units]].double().numpy())
    if km.n_clusters < n_units:  # fewer frames than units: pad with jittered copies
        extra = km.centers[rng.integers(0, km.n_clusters, n_units - km.n_clusters)]
        km = KMeansModel(np.concatenate([km.centers, extra + 1e-3 * rng.standard_normal(extra.shape)]))
    km.save(layout.kmeans)
    fps = {"extractor": ext.fingerprint, "kmeans": km.fingerprint}
    save_unit_model(layout.root, SpeechEncoder(ext, km), "tiny_hubert", ckpt)

    dictionary = UnitDictionary.from_units(range(n_units))
    lm = UnitLM(CONFIGS[ulm_config](len(dictionary)))
    # spkit's uLM checkpoint format (spkit.ulm.train writes it, load_ulm reads it strictly).
    torch_save({"format": CHECKPOINT_FORMAT, "model": lm.state_dict(), "model_config": lm.cfg.to_dict(),
                "dictionary": dictionary.symbols[4:]}, layout.ulm / "checkpoint_best.pt")
    g = torch.Generator().manual_seed(0)
    train = [TaskExample(f"t{i}", "", "train", "s", torch.randint(0, n_units, (25,), generator=g).tolist(),
                         KWS12[i % 12]) for i in range(48)]
    spec = build_spec("kws", {"train": train})
    verb = build_verbalizer("frequency", spec, dictionary, train)
    model = build_prompted(lm, spec, verb, PromptConfig(method="deep_prompt", length=prompt_length),
                           init_batch=Collator(spec, verb, dictionary)(train[:16]), seed=0)
    save_prompt(layout.prompt_dir("kws", "deep_prompt", 0) / "prompt.pt", model, fps)


def measure(run: Path, task: str, method: str, repeats: int, warmup: int, clip: Path) -> dict[str, Any]:
    """Load a Predictor and time it on ``clip``; returns the numbers (milliseconds)."""
    import torch

    from spkit.audio import load_audio
    from spkit.prompt.decode import score_labels
    from spkit.prompt.predict import Predictor
    from spkit.prompt.tasks import TaskExample

    t0 = time.perf_counter()
    pred = Predictor(run, task, method)
    load_s = time.perf_counter() - t0
    for _ in range(warmup):
        pred.predict_file(clip)
    total, read, units, lm = [], [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        pred.predict_file(clip)
        total.append(1e3 * (time.perf_counter() - t))
        # Stages apart (same work as predict_file, timed piecewise).
        t = time.perf_counter()
        wave = load_audio(clip)
        t1 = time.perf_counter()
        u = pred.units(wave)
        t2 = time.perf_counter()
        batch = pred.collator([TaskExample("x", "x", "predict", "", u, "")])
        with torch.inference_mode():
            score_labels(pred.model, batch)
        t3 = time.perf_counter()
        read.append(1e3 * (t1 - t))
        units.append(1e3 * (t2 - t1))
        lm.append(1e3 * (t3 - t2))

    def stats(xs: list[float]) -> dict[str, float]:
        xs = sorted(xs)
        return {"median": statistics.median(xs), "p90": xs[int(0.9 * (len(xs) - 1))], "max": xs[-1]}

    return {"load_s": load_s, "total_ms": stats(total), "read_ms": stats(read), "units_ms": stats(units),
            "ulm_ms": stats(lm), "n_units": len(u), "labels": len(pred.spec.labels),
            "ulm": pred.model.lm.cfg.to_dict(), "extractor": str(pred.encoder.extractor.fingerprint),
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, help="a run folder (default: build a demo run)")
    p.add_argument("--task", default="kws")
    p.add_argument("--method", default="deep_prompt")
    p.add_argument("--ulm-config", default="tiny", help="demo run's uLM size (spkit.ulm.model.CONFIGS)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    p.add_argument("--budget-ms", type=float, default=200.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "predict_latency.json")
    args = p.parse_args(argv)

    import soundfile as sf
    import torch

    from spkit.io import write_json

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "run"
            print(f"building a demo run (uLM {args.ulm_config}) in {run} ...", file=sys.stderr, flush=True)
            build_demo_run(run, args.ulm_config)
        clip = Path(tmp) / "clip_1s.wav"
        sf.write(clip, speechlike_clip(seed=100), 16000)
        res = measure(run, args.task, args.method, args.repeats, args.warmup, clip)
    res.update({"source": str(args.run) if args.run else f"demo ({args.ulm_config})", "task": args.task,
                "method": args.method, "budget_ms": args.budget_ms,
                "machine": {"python": platform.python_version(), "platform": platform.platform()}})
    print("| stage | median ms | p90 ms | max ms |\n|---|---:|---:|---:|")
    for k in ("total_ms", "read_ms", "units_ms", "ulm_ms"):
        s = res[k]
        print(f"| {k[:-3]} | {s['median']:.1f} | {s['p90']:.1f} | {s['max']:.1f} |")
    ok = res["total_ms"]["median"] <= args.budget_ms
    print(f"\nPredictor load {res['load_s']:.2f} s; 1 s clip -> {res['n_units']} units; median "
          f"{res['total_ms']['median']:.1f} ms ({'PASS' if ok else 'FAIL'}: budget {args.budget_ms:.0f} ms, "
          f"{res['threads']} thread(s))")
    write_json(args.out, res)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

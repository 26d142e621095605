"""Latency of the notebook-06 demo's update on a 1 s clip (target: the prediction under 200 ms on the CPU).

Times what one widget change costs, after warm-up calls, on a 1 s 16 kHz clip:

* ``predict``: :meth:`spkit.demo.DemoSession.analyse`'s prediction alone (``Predictor.predict_wave``:
  features + k-means + prompted uLM scoring of every label), the number the 200 ms budget is about;
* ``analyse``: the whole analysis (prediction + the per-frame units the figure and vocoder need);
* ``figures``: building the probability bars and the waveform/spectrogram/units figure;
* ``vocoder``: Griffin-Lim resynthesis of the clip's units (``hear the units``; 32 iterations).

Sources: ``--run RUN`` (a real run folder: its unit model, uLM, prompt and ``vocoder/templates.pt``, fitted
if missing), or by default the synthetic CPU-scale run of ``bench/predict_latency.py`` (random weights, tiny
HuBERT + K=100 + uLM ``--ulm-config``; latency does not depend on weight values), whose templates are fitted
on the test clip itself. The clip is ``predict_latency.speechlike_clip`` (or ``--clip`` a file, cut to 1 s).

Usage::

    python bench/demo_latency.py                        # synthetic run, tiny uLM (the default preset's)
    python bench/demo_latency.py --ulm-config tiny,small,transformer_lm_big
    python bench/demo_latency.py --run /tmp/run_nb6 --task kws

Prints a table and writes ``bench/results/demo_latency.json`` (atomically; one row per source). Exit 1 if a
median prediction is over ``--budget-ms``. Use one thread (the default) on a shared machine: with two threads
on a busy 2-core machine the predictions here were 2-5x slower, not faster.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: reuse its demo run

from predict_latency import build_demo_run, speechlike_clip  # noqa: E402


def timed(fn: Callable[[], Any], repeats: int, warmup: int) -> tuple[dict[str, float], Any]:
    """Median, p90 and max wall time of ``fn()`` in milliseconds, and its last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    xs = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        xs.append(1e3 * (time.perf_counter() - t))
    xs.sort()
    return {"median": statistics.median(xs), "p90": xs[int(0.9 * (len(xs) - 1))], "max": xs[-1]}, out


def measure(run: Path, task: str, method: str, wave: Any, repeats: int, warmup: int,
            fit_vocoder_on_clip: bool) -> dict[str, Any]:
    import torch

    from spkit import demo, viz
    from spkit.vocoder import fit_templates, load_run_vocoder

    t0 = time.perf_counter()
    session = demo.DemoSession(run)
    entry = session.find(task, method)
    session.predictor(entry)
    load_s = time.perf_counter() - t0

    predictor = session.predictor(entry)
    predict, _ = timed(lambda: predictor.predict_wave(wave), repeats, warmup)
    analyse, a = timed(lambda: session.analyse(wave, entry, "clip"), repeats, warmup)
    figures, _ = timed(lambda: (demo.probability_figure(a.scores or {"?": 1.0}),
                                viz.waveform_units_figure(a.wave, a.frame_units)), max(3, repeats // 4), 1)
    if fit_vocoder_on_clip:
        vocoder = fit_templates([(wave, a.frame_units)], session.unit_model()[1].n_clusters)
    else:
        vocoder = load_run_vocoder(run, progress=False)
    synth, out = timed(lambda: vocoder.synthesize(a.units, a.durations), max(3, repeats // 4), 1)
    return {"load_s": load_s, "predict_ms": predict, "analyse_ms": analyse, "figures_ms": figures,
            "vocoder_ms": synth, "n_frames": len(a.frame_units), "n_units": len(a.units),
            "resynth_samples": int(out.numel()), "labels": len(a.scores or {}), "prompt": str(entry.path),
            "ulm": predictor.model.lm.cfg.to_dict(), "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, help="a run folder (default: build the synthetic demo run)")
    p.add_argument("--task", default="kws")
    p.add_argument("--method", default="deep_prompt")
    p.add_argument("--ulm-config", default="tiny",
                   help="synthetic run's uLM size(s), comma-separated (spkit.ulm.model.CONFIGS)")
    p.add_argument("--clip", type=Path, help="an audio file (cut to 1 s) instead of the synthetic clip")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    p.add_argument("--budget-ms", type=float, default=200.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "demo_latency.json")
    args = p.parse_args(argv)

    import torch

    from spkit.audio import load_audio
    from spkit.io import write_json

    torch.set_num_threads(args.threads)
    wave = load_audio(args.clip)[:16000] if args.clip else torch.from_numpy(speechlike_clip(seed=100))
    rows = []
    for config in ([None] if args.run else args.ulm_config.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            run = args.run
            if run is None:
                run = Path(tmp) / "run"
                print(f"building a synthetic run (uLM {config}) in {run} ...", file=sys.stderr, flush=True)
                build_demo_run(run, config)
            res = measure(run, args.task, args.method, wave, args.repeats, args.warmup, args.run is None)
        res["source"] = str(args.run) if args.run else f"synthetic ({config})"
        rows.append(res)
    print("| source | uLM params | predict ms (median / p90) | analyse ms | figures ms | vocoder ms |\n"
          "|---|---:|---:|---:|---:|---:|")
    for r in rows:
        c = r["ulm"]
        size = f"d={c['dim']} x {c['n_layers']}"
        print(f"| {r['source']} | {size} | {r['predict_ms']['median']:.1f} / {r['predict_ms']['p90']:.1f} | "
              f"{r['analyse_ms']['median']:.1f} | {r['figures_ms']['median']:.1f} | "
              f"{r['vocoder_ms']['median']:.1f} |")
    ok = all(r["predict_ms"]["median"] <= args.budget_ms for r in rows)
    print(f"\n{wave.numel() / 16000:.2f} s clip, {args.threads} thread(s): "
          f"{'PASS' if ok else 'FAIL'} (budget {args.budget_ms:.0f} ms for the median prediction)")
    write_json(args.out, {"task": args.task, "method": args.method, "clip_s": wave.numel() / 16000,
                          "threads": args.threads, "budget_ms": args.budget_ms, "rows": rows,
                          "machine": {"python": platform.python_version(), "platform": platform.platform()}})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of the tiny log-mel HuBERT on this machine: seconds of audio per second of training and
of inference (feature extraction), written as JSON to ``bench/results/tiny_hubert_throughput.json``.

    python bench/tiny_hubert_throughput.py [--steps 30] [--threads 1] [--dim 192 --layers 4]

Training runs on random 2 s crops of synthetic noise-and-tone clips (the speed does not depend on
the content); one warm-up step is excluded from the timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import time
from pathlib import Path

import torch

from spkit.features.pretrain import PretrainConfig, loss_fn, make_batch
from spkit.features.tiny_hubert import (
    TinyHubert,
    TinyHubertConfig,
    TinyHubertExtractor,
    count_parameters,
    span_mask,
)
from spkit.io import write_json


def _clips(n: int, seconds: float) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * 16000)) / 16000
    tone = [0.2 * torch.sin(2 * math.pi * (150 + 40 * i) * t) for i in range(n)]
    return [(x + 0.05 * torch.randn(t.shape, generator=g)).float() for x in tone]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--crop-seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "tiny_hubert_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    mcfg = TinyHubertConfig(dim=args.dim, layers=args.layers, ffn_dim=4 * args.dim)
    model = TinyHubert(mcfg)
    cfg = PretrainConfig(batch_size=args.batch_size, crop_seconds=args.crop_seconds)
    waves = _clips(64, 3.0)
    labels = [torch.randint(0, mcfg.num_classes, ((w.shape[0] - 400) // 320 + 1,)) for w in waves]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    audio, elapsed = 0.0, 0.0
    for step in range(args.steps + 1):
        batch, lengths, targets = make_batch(waves, labels, cfg, step)
        mask = span_mask((targets >= 0).sum(1), targets.shape[1], mcfg.mask_prob, mcfg.mask_length)
        t0 = time.perf_counter()
        loss, _ = loss_fn(model, batch, lengths, targets, mask, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step:  # step 0 warms up allocators and kernels
            elapsed += time.perf_counter() - t0
            audio += float(lengths.sum()) / 16000
    train_rate = audio / elapsed

    ext = TinyHubertExtractor(model, layer=max(1, args.layers // 2))
    t0 = time.perf_counter()
    for w in waves:
        ext.extract(w)
    infer_one = sum(w.shape[0] for w in waves) / 16000 / (time.perf_counter() - t0)
    stacked = torch.stack(waves)
    t0 = time.perf_counter()
    for i in range(0, len(waves), 16):
        ext.extract_batch(stacked[i:i + 16])
    infer_batch = stacked.numel() / 16000 / (time.perf_counter() - t0)

    result = {
        "model": dataclasses.asdict(mcfg), "parameters": count_parameters(model),
        "threads": args.threads, "batch_size": args.batch_size, "crop_seconds": args.crop_seconds,
        "train_steps_timed": args.steps,
        "train_audio_s_per_s": round(train_rate, 1),
        "infer_audio_s_per_s_one_clip": round(infer_one, 1),
        "infer_audio_s_per_s_batch16": round(infer_batch, 1),
        "torch": torch.__version__, "machine": platform.machine(), "cpu_count": os.cpu_count(),
    }
    write_json(args.out, result)
    print(result)


if __name__ == "__main__":
    main()

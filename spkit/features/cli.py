"""``spkit pretrain-hubert``: train the tiny log-mel HuBERT (iteration 1 on MFCC k-means, then 2+).

Input: a folder of WAV/FLAC files (searched recursively) or a manifest (a text file with one audio
path per line, relative to the manifest's folder; an optional ``path<TAB>...`` extra column is
ignored). Output: ``OUT_DIR/iter1.pt``, ``OUT_DIR/iter2.pt``...; rerunning resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="folder of .wav/.flac files, or a manifest of paths")
    parser.add_argument("out_dir", type=Path, help="folder for iter1.pt, iter2.pt, ...")
    parser.add_argument("--iterations", type=int, default=2, help="HuBERT iterations (default 2)")
    parser.add_argument("--clusters", type=int, default=100, help="k-means clusters per iteration")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per iteration")
    parser.add_argument("--seconds", type=float, default=None,
                        help="wall-clock budget per iteration; rerun to resume")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-seconds", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dim", type=int, default=192, help="transformer width")
    parser.add_argument("--layers", type=int, default=4, help="transformer layers")
    parser.add_argument("--target-layer", type=int, default=None,
                        help="teacher layer clustered for iteration >= 2 (default: middle)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on a shared box)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many clips")
    parser.add_argument("--no-augment", action="store_true",
                        help="train on the clips as they are (default: frequency warp, noise, overlaid "
                             "speech and level changes on the input, targets from the clean clip)")
    parser.add_argument("--no-cmvn", action="store_true",
                        help="no per-clip log-mel mean normalisation in the front end")


def audio_files(data: Path) -> list[Path]:
    """The audio files named by a folder (recursive, sorted) or a manifest file."""
    from spkit.data.base import DataError

    if data.is_dir():
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    elif data.is_file():
        lines = [ln.split("\t")[0].strip() for ln in data.read_text(encoding="utf-8").splitlines()]
        files = [(data.parent / ln) for ln in lines if ln and not ln.startswith("#")]
    else:
        raise DataError(f"{data}: no such folder or manifest")
    if not files:
        raise DataError(f"{data}: no .wav or .flac files found")
    return files


def main(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from spkit.audio import load_audio
    from spkit.features.pretrain import INVARIANCE_AUGMENTATION, PretrainConfig, pretrain_iterations
    from spkit.features.tiny_hubert import TinyHubertConfig

    torch.set_num_threads(args.threads)
    files = audio_files(args.data)[: args.limit]
    waves = [load_audio(p) for p in tqdm(files, desc="loading audio")]
    config = PretrainConfig(num_clusters=args.clusters, max_steps=args.steps, max_seconds=args.seconds,
                            batch_size=args.batch_size, crop_seconds=args.crop_seconds, lr=args.lr,
                            target_layer=args.target_layer, seed=args.seed,
                            **({} if args.no_augment else INVARIANCE_AUGMENTATION))
    model_config = TinyHubertConfig(dim=args.dim, layers=args.layers, ffn_dim=4 * args.dim,
                                    utterance_cmvn=not args.no_cmvn)
    for res in pretrain_iterations(waves, args.out_dir, args.iterations, config, model_config):
        state = "done" if res["finished"] else "paused (rerun to resume)"
        print(f"{res['path']}: step {res['step']}, loss {res['loss']:.3f}, masked acc {res['acc']:.2f}, "
              f"{res['audio_seconds'] / max(res['seconds'], 1e-9):.1f} s audio per s, {state}")
    return 0

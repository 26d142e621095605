"""``spkit fit-kmeans`` and ``spkit quantize``: corpus -> km.bin -> GSLM unit files.

One module serves both subcommands: :func:`add_arguments` looks at the subcommand's name (the last
word of ``parser.prog``), so ``spkit.cli`` registers this module under both names. Without the
``spkit`` front end: ``python -m spkit.units.cli {fit-kmeans,quantize} ...``.

Examples::

    spkit fit-kmeans data/kws --split train --features hubert --checkpoint hubert_base_ls960.pt \\
        --layer 6 --clusters 100 --out runs/km100.bin
    spkit quantize data/kws --features hubert --checkpoint hubert_base_ls960.pt --layer 6 \\
        --km runs/km100.bin --out runs/units --cache runs/unit-cache
    # on a cluster: the same command once per task, then merge
    spkit quantize ... --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT   # or --shard auto
    spkit quantize ... --merge 8
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from spkit.errors import UserError

FIT = "fit-kmeans"
QUANTIZE = "quantize"


def _corpus_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", type=Path,
                        help="corpus folder (Speech Commands, Fluent, LibriSpeech, TSV layout) or a manifest "
                             "file (.tsv with path/label/speaker, or fairseq's root + relpath<TAB>samples)")
    parser.add_argument("--kind", default="auto",
                        help="corpus kind: auto (detect), speech_commands, fluent, librispeech, tsv")
    parser.add_argument("--split", action="append", default=None,
                        help="split(s) to use (repeatable); default: fit-kmeans uses train, quantize all")
    parser.add_argument("--features", default="hubert", choices=["hubert", "tiny_hubert", "mfcc", "logmel"],
                        help="feature extractor kind (default hubert)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="extractor weights (hubert: fairseq/torchaudio/spkit file; trusted files only)")
    parser.add_argument("--layer", type=int, default=None, help="1-based transformer layer (GSLM: 6)")
    parser.add_argument("--cmvn", action="store_true",
                        help="per-clip mean/variance normalisation of the features (use the same setting for "
                             "fit-kmeans and quantize; GSLM's km.bin files expect it off)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared box)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N utterances per split")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fit-kmeans`` or ``quantize``, chosen by the subcommand's name."""
    command = parser.prog.split()[-1]
    if command not in (FIT, QUANTIZE):
        raise ValueError(f"spkit.units.cli serves {FIT!r} and {QUANTIZE!r}, not {command!r}")
    parser.set_defaults(_units_command=command)
    _corpus_arguments(parser)
    if command == FIT:
        parser.add_argument("--out", type=Path, required=True, help="km.bin to write (joblib, GSLM's format)")
        parser.add_argument("--clusters", type=int, default=100, help="K (GSLM: 50, 100, 200)")
        parser.add_argument("--max-frames", type=int, default=100_000,
                            help="frames reservoir-sampled from the corpus for fitting (default 100000)")
        parser.add_argument("--backend", default="torch", choices=["torch", "sklearn"],
                            help="torch: k-means++ + Lloyd (CPU/GPU, default); sklearn: MiniBatchKMeans")
        parser.add_argument("--preset", default="fast", choices=["fast", "gslm"],
                            help="fast: 3 restarts; gslm: GSLM's MiniBatchKMeans settings (20 restarts)")
        parser.add_argument("--n-init", type=int, default=None, help="restarts (overrides the preset)")
        parser.add_argument("--seed", type=int, default=0)
    else:
        parser.add_argument("--km", type=Path, required=True, help="km.bin (GSLM's or from fit-kmeans)")
        parser.add_argument("--out", type=Path, required=True,
                            help="output folder: <split>.txt (name|units), <split>.jsonl, errors, meta")
        parser.add_argument("--cache", type=Path, default=None, help="per-utterance unit cache folder")
        parser.add_argument("--cache-identity", default="stat", choices=["stat", "content"],
                            help="identify audio by path+size+mtime (stat) or sha256 (content)")
        parser.add_argument("--shard", default="0/1",
                            help="i/n (0-based): do the i-th of n contiguous slices; 'auto' reads "
                                 "SLURM_ARRAY_TASK_ID/COUNT or RANK/WORLD_SIZE")
        parser.add_argument("--merge", type=int, default=None, metavar="N",
                            help="do not quantize: merge the N finished shards of each split")
        parser.add_argument("--batch-size", type=int, default=1,
                            help="encode up to this many clips of exactly equal length together")


def _extractor(args: argparse.Namespace) -> Any:
    from spkit.features.factory import load_extractor

    return load_extractor(args.features, checkpoint=args.checkpoint, layer=args.layer, device=args.device,
                          cmvn=args.cmvn)


def _splits(args: argparse.Namespace, default: list[str] | None) -> dict[str, list[Any]]:
    from spkit.data.base import DataError
    from spkit.data.corpus import load_corpus

    kind = args.kind
    if kind == "auto" and args.corpus.is_file():
        kind = "tsv"
    wanted = args.split or default
    splits = load_corpus(kind, args.corpus, wanted)
    splits = {k: (v[:args.limit] if args.limit else v) for k, v in splits.items()}
    if not any(splits.values()):
        raise DataError(f"{args.corpus}: no utterances in split(s) {wanted or 'any'}")
    return splits


def _fit(args: argparse.Namespace) -> int:
    from spkit.units.kmeans import fit_kmeans_on_corpus

    splits = _splits(args, ["train"])
    utterances = [u for utts in splits.values() for u in utts]
    extractor = _extractor(args)
    model = fit_kmeans_on_corpus(utterances, extractor, args.clusters, max_frames=args.max_frames,
                                 seed=args.seed, progress=not args.no_progress, backend=args.backend,
                                 preset=args.preset, n_init=args.n_init, device=args.device)
    model.save(args.out)
    print(f"wrote {args.out} (K={model.n_clusters}, dim={model.dim}, fingerprint {model.fingerprint}) "
          f"from {len(utterances)} utterances of {', '.join(splits)}")
    return 0


def _report(out_dir: Path, split: str, utterances: list[Any]) -> None:
    """Unit-quality report beside the unit file (sequence stats; PNMI etc. when alignments exist)."""
    from spkit.io import write_json
    from spkit.units.metrics import alignments_by_uid, unit_report
    from spkit.units.quantize import read_units

    units = read_units(out_dir / f"{split}.txt")
    if units:
        report = unit_report(units, alignments_by_uid(utterances))
        write_json(out_dir / f"{split}.report.json", report)
        seq = report["sequence"]
        line = f"{split}: {seq['n_utterances']} utterances, {seq['dedup_units_per_second']:.1f} units/s"
        if "phones" in report:
            line += f", phone PNMI {report['phones']['pnmi']:.3f}, purity {report['phones']['purity']:.3f}"
        print(line)


def _quantize(args: argparse.Namespace) -> int:
    from spkit.units.encoder import SpeechEncoder
    from spkit.units.kmeans import KMeansModel
    from spkit.units.quantize import merge_shards, parse_shard, quantize_corpus

    splits = _splits(args, None)
    if args.merge is not None:
        for split, utts in splits.items():
            path = merge_shards(args.out, args.merge, name=split)
            print(f"merged {args.merge} shards into {path}")
            _report(args.out, split, utts)
        return 0
    shard = parse_shard(args.shard)
    encoder = SpeechEncoder(_extractor(args), KMeansModel.load(args.km), device=args.device)
    for split, utts in splits.items():
        if not utts:
            continue
        path = quantize_corpus(utts, encoder, args.out, shard=shard, cache_dir=args.cache,
                               name=split, identity=args.cache_identity,
                               batch_size=args.batch_size, progress=not args.no_progress)
        print(f"wrote {path}")
        if shard[1] == 1:
            _report(args.out, split, utts)
    return 0


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse missing inputs before any model loads (the corpus, the km.bin, the extractor weights)."""
    if not args.corpus.exists():
        raise UserError(f"{args.corpus}: no such corpus folder or manifest")
    if args.checkpoint is not None and not args.checkpoint.exists():
        raise UserError(f"--checkpoint {args.checkpoint}: no such file")
    if args.features in ("hubert", "tiny_hubert") and args.checkpoint is None:
        raise UserError(f"--features {args.features} needs --checkpoint (e.g. hubert_base_ls960.pt)")
    if args._units_command == QUANTIZE and args.merge is None and not args.km.is_file():
        raise UserError(f"--km {args.km}: no such k-means file")
    if args._units_command == FIT and args.clusters < 1:
        raise UserError(f"--clusters {args.clusters}: must be at least 1")


def main(args: argparse.Namespace) -> int:
    """Run the subcommand chosen in :func:`add_arguments`; a user error prints one line and returns 2."""
    try:
        check_arguments(args)
        import torch

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        torch.set_num_threads(max(1, args.threads))
        return _fit(args) if args._units_command == FIT else _quantize(args)
    except (UserError, FileNotFoundError) as e:
        print(f"spkit {args._units_command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    top = argparse.ArgumentParser(prog="spkit.units.cli", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    for name in (FIT, QUANTIZE):
        add_arguments(sub.add_parser(name, prog=f"spkit {name}"))
    sys.exit(main(top.parse_args()))

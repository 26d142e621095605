"""``spkit synth {kws,intent,lid,asr,sf,pretrain} --preset {smoke,default} --out DIR --seed N``."""

from __future__ import annotations

import argparse
import sys

KINDS = ("kws", "intent", "lid", "asr", "sf", "pretrain")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS,
                        help="kws: Speech Commands v0.01; intent: Fluent Speech Commands; "
                             "lid: language ID manifest; asr: LibriSpeech layout; "
                             "sf: Audio SNIPS layout (slot filling, as SUPERB reads it); "
                             "pretrain: continuous read speech for spkit-base (training-side voices only)")
    parser.add_argument("--preset", choices=("smoke", "default"), default="default",
                        help="corpus size: smoke (seconds, for tests) or default (minutes)")
    parser.add_argument("--out", required=True,
                        help="output folder (new, empty, or an earlier run to resume)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    parser.add_argument("--jobs", type=int, default=None,
                        help="shard processes side by side (default 2; the output does not depend on it)")


def main(args: argparse.Namespace) -> int:
    from spkit.synth.corpora import SynthError, build_corpus
    from spkit.synth.pretrain_text import TextSourceError

    try:
        report = build_corpus(args.kind, args.out, args.preset, args.seed, args.jobs)
    except (SynthError, TextSourceError, ValueError) as e:
        print(f"spkit synth: error: {e}", file=sys.stderr)
        return 2
    if report.noop:
        print(f"{report.root}: already complete ({report.clips} clips), nothing to do")
    else:
        print(f"{report.root}: {report.clips} clips; synthesized {report.shards_run} of "
              f"{report.shards_total} shards now; see {report.root}/spkit/corpus.json")
    return 0

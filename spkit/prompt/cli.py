"""``spkit predict``: label audio files with a run's trained prompt, one JSON object per line.

    spkit predict --run RUN --task kws [--method deep_prompt] [--seed N] FILE...

prints ``{"file": ..., "label": ..., "scores": {label: probability, ...}}`` per file (``scores`` is null
for ASR, whose label is the transcript; for SF the label is the tagged slot string and ``"slots": [[type,
value], ...]`` lists them), or ``{"file": ..., "error": "..."}`` for a file that cannot be read; the other
files are still predicted and the exit status is 1 if any file failed, 2 if the run,
task, method or seed cannot be used (the message on stderr says why).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV/FLAC, any sample rate)")
    parser.add_argument("--run", required=True, help="the run folder (spkit run --out RUN)")
    parser.add_argument("--task", required=True, help="kws, intent, lid, asr or sf")
    parser.add_argument("--method", default="deep_prompt",
                        help="prompt method folder under RUN/prompts/TASK (default: deep_prompt)")
    parser.add_argument("--seed", type=int, default=None,
                        help="prompt seed (default: the best in RUN/results.json, else the lowest trained)")
    parser.add_argument("--prompt", default=None, help="an explicit prompt.pt instead of the run's")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--beam", type=int, default=None,
                        help="ASR beam width (default: the one the run evaluated with)")
    parser.add_argument("--max-len", type=int, default=None,
                        help="ASR output tokens at most (default: the cap the run evaluated with)")


def main(args: argparse.Namespace) -> int:
    from spkit.prompt.checkpoint import PromptFileError
    from spkit.prompt.predict import PredictError, Predictor

    try:
        predictor = Predictor(args.run, args.task, args.method, args.seed, prompt=args.prompt,
                              device=args.device, beam=args.beam, max_len=args.max_len)
    except (PredictError, PromptFileError, FileNotFoundError, ValueError) as e:
        print(f"spkit predict: error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for line in predictor.predict_lines(args.files):
        failed += "error" in line
        print(json.dumps(line, ensure_ascii=False), flush=True)
    if failed:
        print(f"spkit predict: {failed} of {len(args.files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0

"""The ``spkit`` command line. Each subcommand lives beside the code it drives; this module only
dispatches, importing a subcommand's module when it is used (torch and friends load slowly)."""

from __future__ import annotations

import argparse
import importlib
import sys

from spkit.errors import UserError

# name -> (module, one-line help). A module provides add_arguments(parser) and main(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("spkit.synth.cli", "synthesize an embedded spoken corpus in a real data set's layout"),
    "run": ("spkit.pipeline", "run the main job (the notebook sequence) with papermill"),
    "predict": ("spkit.prompt.cli", "predict labels of audio files with a run's trained prompt (JSON lines)"),
    "pretrain-hubert": ("spkit.features.cli", "pre-train the tiny log-mel HuBERT (HuBERT iterations 1-2)"),
    "pretrain-base": ("spkit.recipes.base_cli", "build or resume spkit-base, the shipped pretrained models"),
    "train-ulm": ("spkit.ulm.cli", "pretrain the unit language model on unit files (name|u1 u2 ...)"),
    "fit-kmeans": ("spkit.units.cli", "fit k-means (GSLM km.bin) on a corpus's features"),
    "quantize": ("spkit.units.cli", "quantize a corpus to discrete units (GSLM name|units files)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spkit",
        description="spkit: prompting generative spoken language models (SpeechPrompt on GSLM units)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the subcommand; a user error (:class:`spkit.errors.UserError`, or a file that does not
    exist) prints one line naming it and returns 2, without a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except (UserError, FileNotFoundError) as e:
        print(f"spkit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())

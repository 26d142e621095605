"""The ``spkit`` command line. Each subcommand lives beside the code it drives; this module only
dispatches, importing a subcommand's module when it is used (torch and friends load slowly)."""

from __future__ import annotations

import argparse
import importlib
import sys

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
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""One module per subcommand group; each exposes `register(subparsers)`."""
from __future__ import annotations

import argparse
from typing import Optional


def add_config_args(parser: argparse.ArgumentParser, default: Optional[str] = None) -> None:
    """The shared `--config FILE key=value ...` arguments."""
    parser.add_argument(
        "--config", "-c", default=default, metavar="FILE",
        help="YAML config: a file, or a shipped profile's name such as cpu-demo, rtx4090 or clip-multilabel (an "
        "unknown name lists them all)" + (f"; default {default}" if default else ""),
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="dotted overrides applied after the file, e.g. train.lr=3e-4 run.name=exp1",
    )


def load_from_args(args: argparse.Namespace):
    from ..config import load_config

    return load_config(args.config, args.overrides)


DEFAULT_PROFILE = "cpu-demo"
"""The embedded default profile, resolved from the installed package (works from any folder)."""

"""One module per subcommand group; each exposes `register(subparsers)`."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional


def add_config_args(parser: argparse.ArgumentParser, default: Optional[str] = None) -> None:
    """The shared `--config FILE key=value ...` arguments."""
    parser.add_argument(
        "--config", "-c", default=default, metavar="FILE",
        help="YAML config (a profile in launch/profiles/)" + (f"; default {default}" if default else ""),
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="dotted overrides applied after the file, e.g. train.lr=3e-4 run.name=exp1",
    )


def load_from_args(args: argparse.Namespace):
    from ..config import load_config

    return load_config(args.config, args.overrides)


DEFAULT_PROFILE = str(Path("launch/profiles/cpu-demo.yaml"))

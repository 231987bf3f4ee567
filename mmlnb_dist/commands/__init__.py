"""One module per subcommand group; each exposes `register(subparsers)`."""
from __future__ import annotations

import argparse
import json
import os
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


def positive_int(text: str) -> int:
    """argparse type of a count or size option: 0 or less is an error naming the option, not a traceback later
    (`range()` with step 0) or a silent "not given"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {value})")
    return value


def user_path(text: str) -> str:
    """argparse type of a path flag: a leading `~` is the home folder, as in path settings (`--out=~/x`: bash leaves
    that `~` to the program, and a folder named `~` was made in the current folder)."""
    return os.path.expanduser(text)


def port_number(text: str) -> int:
    """argparse type of a TCP port to listen on: 1..65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535 (got {text!r})")
    return value


def load_from_args(args: argparse.Namespace):
    from ..config import load_config

    return load_config(args.config, args.overrides)


DEFAULT_PROFILE = "cpu-demo"
"""The embedded default profile, resolved from the installed package (works from any folder)."""


def classes_override(text: str) -> str:
    """The `data.classes` override of a `--classes a,b,c` flag. As JSON, names stay text: class folders or labels
    named `1,2,3` (tumour grades) or `yes,no`, passed as the YAML list `[1,2,3]`, were read as numbers and booleans."""
    return f"data.classes={json.dumps([c.strip() for c in text.split(',') if c.strip()])}"

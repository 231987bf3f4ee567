"""`mmlnb-dist slides` subcommands (registered by the issue that implements them)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    return None

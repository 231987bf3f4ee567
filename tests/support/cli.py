"""Run the real CLI in this process and keep what it printed (for tests of its exit codes and messages)."""
from __future__ import annotations

import contextlib
import io
from typing import Sequence, Tuple


def run_cli(args: Sequence[str]) -> Tuple[int, str, str]:
    """`mmlnb_dist.cli.main(args)`: (exit code, stdout, stderr)."""
    from mmlnb_dist.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()

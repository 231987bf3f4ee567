"""The package's progress bars: one owner for how long work shows itself on the console.

    for batch in progress_bar(loader, total=n, desc="epoch 3", enabled=env.is_main):
        ...

On a terminal a bar redraws about ten times a second, as tqdm does. Written to a file (a Slurm log, `nohup`,
CI, `cmd > log 2>&1`) every redraw is another line of the log: a fine-tuning run of a few thousand steps left
thousands of lines. There a bar redraws at most every `MMLNB_PROGRESS_INTERVAL` seconds (default 30), and still
shows where it starts and where it ends. A bar that a terminal clears when it ends (`leave=False`: an epoch's
steps, an evaluation) shows in a file only once it has run that long: otherwise every epoch left a line stuck at
`0%` in the log, beside the epoch's own summary line.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Optional

from tqdm import tqdm

PROGRESS_INTERVAL_ENV = "MMLNB_PROGRESS_INTERVAL"
"""Seconds between two redraws of a bar that is not on a terminal (default `FILE_INTERVAL_S`)."""

FILE_INTERVAL_S = 30.0
TERMINAL_INTERVAL_S = 0.1
"""tqdm's own default."""


def redraw_interval(stream: Any) -> float:
    """Seconds between two redraws of a bar written to `stream`: tqdm's default on a terminal, else
    `MMLNB_PROGRESS_INTERVAL` (default 30 s)."""
    if is_terminal(stream):
        return TERMINAL_INTERVAL_S
    value = os.environ.get(PROGRESS_INTERVAL_ENV)
    if value is None:
        return FILE_INTERVAL_S
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{PROGRESS_INTERVAL_ENV}={value!r} is not a number of seconds") from None
    if not seconds >= 0:  # also NaN, which passes `seconds < 0` and would keep the bar from ever redrawing
        raise ValueError(f"{PROGRESS_INTERVAL_ENV}={value!r} must be at least 0 seconds")
    return seconds


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


class ProgressBar(tqdm):
    """tqdm whose `set_postfix` (a step's loss, a rate) shows at the next redraw instead of forcing one: tqdm's
    forced redraw per call was one log line per training step."""

    def set_postfix(self, ordered_dict=None, refresh: bool = False, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)


def progress_bar(iterable: Optional[Iterable] = None, *, enabled: bool = True, file: Any = None,
                 **kwargs: Any) -> ProgressBar:
    """A bar over `iterable` (or updated by hand with `total`), hidden when not `enabled` (other ranks, `--quiet`),
    redrawn as `redraw_interval` says for its stream (stderr unless `file`)."""
    stream = file if file is not None else sys.stderr
    interval = redraw_interval(stream)
    kwargs.setdefault("mininterval", interval)
    if kwargs.get("leave") is False and not is_terminal(stream):
        kwargs.setdefault("delay", interval)  # (tqdm then writes nothing at all for a bar that ends sooner)
    return ProgressBar(iterable, disable=not enabled, file=stream, **kwargs)


def close_open_bars() -> None:
    """Close every bar of this package still open: an interruption is unwinding the loops that drew them. Each
    ends now, above the message that says why the work stopped; left open, tqdm redrew it under every message
    (`tqdm.write`) and its owner's close came last of all, at garbage collection, below the "interrupted" line."""
    for bar in list(getattr(ProgressBar, "_instances", ())):
        if isinstance(bar, ProgressBar) and not bar.disable:
            bar.close()


def route_library_bars() -> None:
    """Draw the bars transformers opens while it loads a model ("Loading weights", once per load) as this package's
    transient bars (`progress_bar(leave=False)`): on a terminal they clear themselves when loading ends; into a file
    they show only when loading lasts a redraw interval. As transformers drew them they stayed on the console,
    inside the describe bar, on every run: nothing a user acts on. Bars the user turned off
    (`HF_HUB_DISABLE_PROGRESS_BARS`) stay off, and hub downloads keep their own bars.

    Called where a model is loaded: importing transformers here would slow every command. Idempotent."""
    from transformers.utils import logging as hf_logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)  # transformers >= 5
    if set_hook is not None:
        set_hook(_transient_library_bar)


def _transient_library_bar(factory: Any, args: tuple, kwargs: dict) -> Any:
    from transformers.utils import logging as hf_logging

    if not hf_logging.is_progress_bar_enabled():
        return factory(*args, **kwargs)  # transformers' empty bar: the user turned bars off
    return progress_bar(*args, **{**kwargs, "leave": False})

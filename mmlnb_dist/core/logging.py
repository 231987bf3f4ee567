"""One console style: stdlib logging, with the rank-0 rule inside the logger.

Every module logs with `logging.getLogger(__name__)`; `setup_logging(rank)` (called by the CLI and by
`core.recipe.run`) gives the package one handler that prints `[component] message` lines through tqdm, so
progress bars are not torn apart, and drops records on ranks other than 0 unless they are marked
`extra={"all_ranks": True}`. Warnings print as `WARNING [component] message`.
"""
from __future__ import annotations

import logging
import sys

PACKAGE = "mmlnb_dist"


class RankZeroFilter(logging.Filter):
    """Keep records on rank 0, and records marked `all_ranks` everywhere (prefixed with the rank)."""

    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank_prefix = f"rank {self.rank} " if self.rank else ""
        return self.rank == 0 or bool(getattr(record, "all_ranks", False))


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        component = record.name.split(".")[-1]
        level = f"{record.levelname} " if record.levelno >= logging.WARNING else ""
        text = f"{level}[{getattr(record, 'rank_prefix', '')}{component}] {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _TqdmHandler(logging.StreamHandler):
    """Writes through `tqdm.write`, so a log line never lands in the middle of a progress bar.

    The stream is the current `sys.stderr`, looked up per record (as `print(file=sys.stderr)` does), so a
    stderr replaced after setup (pytest's capture, a worker's redirect) is honoured and never a stale one.
    """

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the lookup above always wins
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


def setup_logging(rank: int = 0, level: int = logging.INFO) -> logging.Logger:
    """Configure the package logger once per process (idempotent; a later call updates the rank)."""
    logger = logging.getLogger(PACKAGE)
    logger.setLevel(level)
    logger.propagate = False
    handler = next((h for h in logger.handlers if isinstance(h, _TqdmHandler)), None)
    if handler is None:
        handler = _TqdmHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
    handler.filters = [RankZeroFilter(rank)]
    return logger

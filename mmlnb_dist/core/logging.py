"""One console style: stdlib logging, with the rank-0 rule inside the logger.

Every module logs with `logging.getLogger(__name__)` (a command whose modules should read as one component, as
predict's do, uses `__package__`); `setup_logging(rank)` (called by the CLI and by
`core.recipe.run`) gives the package one handler that prints `[component] message` lines through tqdm, so
progress bars are not torn apart, and drops records on ranks other than 0 unless they are marked
`extra={"all_ranks": True}`. Warnings print as `WARNING [component] message`.

The console shows only what a user can act on: `quiet_libraries()` (called by `setup_logging`) filters the
libraries' deprecation notices and DeepSpeed's accelerator chatter in this one place; `add_log_file` keeps
everything (DEBUG, e.g. the per-epoch metric tables) in a file.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Optional

from .progress import close_open_bars, is_terminal

PACKAGE = "mmlnb_dist"

PACKAGE_LINE = r"^([A-Z]+ )?\[(rank \d+ )?[\w.-]+\] "
"""A console line of this package (`_Formatter`): `[component] ...`, `WARNING [rank 1 component] ...`."""


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

    hide_details = False
    """Set by `_details_off_console`: records marked `DETAIL` are left to the log file."""

    def emit(self, record: logging.LogRecord) -> None:
        if self.hide_details and getattr(record, "detail", False):
            return
        try:
            from tqdm import tqdm

            if isinstance(sys.exc_info()[1], KeyboardInterrupt):  # logged while Ctrl-C / SIGTERM unwinds the work
                close_open_bars()  # its bars end above the message, not redrawn under it
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


DETAIL = {"detail": True}
"""`extra=` for records that a command's own summary repeats (a run's final metric tables, per class and confusion
matrix): under `_details_off_console` they reach the log file, not the console."""


@contextlib.contextmanager
def _details_off_console():
    """Within: records marked `DETAIL` stay off the console, for a command that prints its own summary of many
    runs (the pipeline report, an ablation table) and keeps the details in its log file (`add_log_file`)."""
    handlers = [h for h in logging.getLogger(PACKAGE).handlers if isinstance(h, _TqdmHandler)]
    for h in handlers:
        h.hide_details = True
    try:
        yield
    finally:
        for h in handlers:
            h.hide_details = False


LIBRARY_WARNING_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
"""Warnings about the libraries' own future: nothing a user of this package can change."""

NOISY_LIBRARY_LOGGERS = {"DeepSpeed": logging.WARNING, "deepspeed": logging.WARNING,
                         "torch.distributed": logging.WARNING,
                         "ray": logging.WARNING, "mlflow": logging.WARNING, "alembic": logging.WARNING,
                         "httpx": logging.WARNING, "urllib3": logging.WARNING, "transformers": logging.ERROR,
                         "accelerate": logging.WARNING, "peft": logging.WARNING, "torch._dynamo": logging.ERROR,
                         "torch.utils.cpp_extension": logging.ERROR}
"""Library loggers that print INFO notices on every run (DeepSpeed's "Setting ds_accelerator to cpu", MLflow's
store migrations, HTTP requests): only their warnings and errors reach the console."""


LIBRARY_NOTICES = {
    "DeepSpeed": ("Setting accelerator to CPU", "Setting ds_accelerator to"),
    # Ray's secure default, announced as a warning on every local start; its warning that authentication is OFF
    # stays (that one is a problem).
    "ray._private.authentication.authentication_token_setup": ("Token authentication is enabled for this Ray",),
}
"""Library warnings that are notices, not problems, by the logger that emits them."""

RAY_PROCESS_NOTICES = (
    # Ray Train's detached helper polls the state API every few seconds to learn whether a trial's controller still
    # lives; on a busy machine a poll times out, and it says so before polling again.
    "Failed to query Ray Train Controller actor state",
    # An ERROR record of Ray's C++ core about Ray Train's own actor, once per trial.
    "Actor with class name: 'PreemptionWatcher' and ID: '[0-9a-f]+' has constructor arguments in the object store",
    # abseil's raw log of a trial process's mutex at exit: no setting turns it off
    r"\[mutex\.cc : \d+\] RAW: (Lock blocking|Lock returning|Unlock) 0x[0-9a-f]+",
)
"""Notices Ray's own processes (trial controllers, their helpers) print, which reach the console of the command
that runs a search: regular expressions; the command's Ray drops matching lines (`RAY_DEDUP_LOGS_SKIP_REGEX`)."""


class _DropNotices(logging.Filter):
    """Drops a library's warnings that are notices (`LIBRARY_NOTICES`). A filter on the library's logger survives
    the library resetting that logger's level on import."""

    def __init__(self, notices: tuple) -> None:
        super().__init__()
        self.notices = notices

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.notices)


def quiet_libraries() -> None:
    """Filter library deprecation warnings and routine library notices (idempotent). Warnings raised by this
    package's own modules still show: they are about the user's config or data."""
    for category in LIBRARY_WARNING_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module=rf"{PACKAGE}(\.|$)")
    for name, level in NOISY_LIBRARY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for name, notices in LIBRARY_NOTICES.items():
        library_logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in library_logger.filters):
            library_logger.addFilter(_DropNotices(notices))
    # transformers keeps its own verbosity switch, read when it is imported (importing it here would slow every
    # command); a user's own setting wins.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # MLflow draws a progress bar for every artifact download, and registering a model downloads its files: bars
    # of a few files each that say nothing to act on. Read by MLflow at each download; a user's own setting wins.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow sets its loggers' level from this when it is imported, undoing the setLevel above for a process that
    # imports it later (its store migrations printed INFO lines mid-pipeline).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # Ray prints every line of a trial on the driver's console behind a "(pid=...)" prefix coloured with escape
    # codes, a terminal or not: in a log file they are noise on every line. Read by Ray at each print.
    if not is_terminal(sys.stderr):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    # Ray merges lines of different processes that are equal once their numbers are removed: two concurrent
    # trials' epoch lines became one "[repeated 2x across cluster]", the other trial's numbers never shown. The
    # package's own lines are never merged (Ray's own still are). Read when Ray is imported: commands import it
    # after this.
    os.environ.setdefault("RAY_DEDUP_LOGS_ALLOW_REGEX", PACKAGE_LINE)
    os.environ.setdefault("RAY_DEDUP_LOGS_SKIP_REGEX", "|".join(f"({notice})" for notice in RAY_PROCESS_NOTICES))


def setup_logging(rank: int = 0, level: Optional[int] = None) -> logging.Logger:
    """Configure the package logger once per process (idempotent; a later call updates the rank, and the console
    level when `level` is given: a recipe's call keeps the level the command line chose)."""
    logger = logging.getLogger(PACKAGE)
    logger.setLevel(logging.DEBUG)  # the console handler keeps `level`; a log file (add_log_file) keeps all
    logger.propagate = False
    handler = next((h for h in logger.handlers if isinstance(h, _TqdmHandler)), None)
    if handler is None:
        handler = _TqdmHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        handler.setLevel(logging.INFO if level is None else level)
        logger.addHandler(handler)
    elif level is not None:
        handler.setLevel(level)
    handler.filters = [RankZeroFilter(rank)]
    quiet_libraries()
    return logger


@contextlib.contextmanager
def library_prints(what: str):
    """Capture what a library call prints to stdout (DeepSpeed's "... built successfully" when it creates a
    process group) and log it at DEBUG: the log file keeps it, the console does not."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        text = buffer.getvalue().strip()
        if text:
            logging.getLogger(f"{PACKAGE}.core.{what}").debug("%s printed: %s", what, text)


def add_log_file(path: Path, rank: int = 0) -> Optional[logging.Handler]:
    """Also write every record of the package (DEBUG included) to `path` on rank 0 (idempotent per path)."""
    if rank != 0:
        return None
    logger = logging.getLogger(PACKAGE)
    path = Path(path).resolve()
    for h in logger.handlers:
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path:
            return h
    for h in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:  # one log file per process
        logger.removeHandler(h)
        h.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
    logger.addHandler(handler)
    return handler


def remove_log_file(handler: Optional[logging.Handler]) -> None:
    """Close a log file `add_log_file` opened (a process running several commands, e.g. tests, keeps none)."""
    if handler is not None:
        logging.getLogger(PACKAGE).removeHandler(handler)
        handler.close()


def stopped_on_request(err: BaseException) -> bool:
    """A clean stop asked for from outside the run: `SystemExit` with code 0 or None, as Ray Tune's scheduler
    (ASHA) stops a trial from inside its report call (`sys.exit(0)` in `ray.train._internal.session`). Not a
    failure: the run trained and reported normally until it was told to stop."""
    return isinstance(err, SystemExit) and err.code in (0, None)


def _log_failure_to_file(handler: Optional[logging.Handler], err: BaseException) -> None:
    """Record in the log file `add_log_file` opened (not on the console, where the CLI prints the error itself)
    what stopped the command: a user error by its message, an interruption as such, a clean stop on request
    (`stopped_on_request`) as an INFO line, anything else with its traceback. A log read after the console is
    gone then ends with the reason."""
    if handler is None:
        return
    from .errors import UserError

    if stopped_on_request(err):
        handler.handle(logging.getLogger(PACKAGE).makeRecord(
            PACKAGE, logging.INFO, __file__, 0, "stopped early on request (exit code %s)", (err.code,), None))
        return
    interrupted = isinstance(err, KeyboardInterrupt)
    message = "interrupted" if interrupted else f"stopped: {err}"
    plain = interrupted or isinstance(err, UserError)
    record = logging.getLogger(PACKAGE).makeRecord(PACKAGE, logging.ERROR, __file__, 0, message, None,
                                                   None if plain else (type(err), err, err.__traceback__))
    handler.handle(record)


@contextlib.contextmanager
def command_log(path: Path, rank: int = 0):
    """The log file of a command that summarises many runs (`pipeline`, `ablate`, one Ray trial of a study): every
    record of the package goes to `path` (rank 0), the records its summary repeats (`DETAIL`) stay off the
    console, and what stopped the command, if anything, is the file's last record."""
    handler = add_log_file(path, rank)
    try:
        with _details_off_console():
            yield handler
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            close_open_bars()  # before the CLI's "interrupted" line, which must be the console's last
        _log_failure_to_file(handler, err)
        raise
    finally:
        remove_log_file(handler)


"""The package's console and log file, found unguarded by a mutation audit of `core/logging.py`: under a launcher
every rank runs the same code, and only rank 0's records reach the console unless a record is marked `all_ranks`
(then prefixed with its rank); the log file keeps DEBUG and ends with what stopped the command."""
from __future__ import annotations

import logging
import re
import warnings

import pytest

from mmlnb_dist.core import logging as L
from mmlnb_dist.core.errors import ConfigError


def _console(capsys) -> list:
    captured = capsys.readouterr()
    return [line for line in (captured.err + captured.out).splitlines() if line.strip()]


def test_rank_0_prints_and_other_ranks_print_only_records_marked_for_all_ranks(package_logger, capsys):
    log = logging.getLogger("mmlnb_dist.recipes.fusion.recipe")
    L.setup_logging(rank=0)
    capsys.readouterr()
    log.info("epoch 1 done")
    assert _console(capsys) == ["[recipe] epoch 1 done"]
    L.setup_logging(rank=2)  # a later call updates the rank
    log.info("epoch 1 done")
    log.warning("my shard is empty", extra={"all_ranks": True})
    log.info("loader ready", extra={"all_ranks": True})
    assert _console(capsys) == ["WARNING [rank 2 recipe] my shard is empty", "[rank 2 recipe] loader ready"]
    for line in ("WARNING [rank 2 recipe] my shard is empty", "[recipe] epoch 1 done"):
        assert re.match(L.PACKAGE_LINE, line), line  # what Ray's log dedup lets through unmerged


def test_the_console_level_is_kept_by_a_later_call_without_one(package_logger, capsys):
    """`--verbose` sets DEBUG on the console; `core.recipe.run` calls setup_logging again (without a level) and
    must not take it back; an INFO record is plain, an ERROR one is prefixed with its level."""
    log = logging.getLogger("mmlnb_dist.core.tracking")
    L.setup_logging(rank=0, level=logging.DEBUG)
    L.setup_logging(rank=0)
    capsys.readouterr()
    log.debug("[step 3] loss 0.5")
    log.error("store gone")
    assert _console(capsys) == ["[tracking] [step 3] loss 0.5", "ERROR [tracking] store gone"]
    L.setup_logging(rank=0, level=logging.INFO)
    log.debug("[step 4] loss 0.4")
    assert _console(capsys) == []
    assert logging.getLogger(L.PACKAGE).propagate is False  # not printed twice through the root logger


def test_a_logged_exception_keeps_its_traceback(package_logger, capsys):
    L.setup_logging(rank=0)
    capsys.readouterr()
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("mmlnb_dist.core.x").exception("failed")
    text = "\n".join(_console(capsys))
    assert text.startswith("ERROR [x] failed") and "Traceback" in text and "ValueError: boom" in text


def test_the_log_file_is_rank_0s_keeps_debug_and_is_one_per_process(package_logger, tmp_path):
    assert L.add_log_file(tmp_path / "rank1.log", rank=1) is None
    assert not (tmp_path / "rank1.log").exists()
    first = L.add_log_file(tmp_path / "a" / "run.log")
    assert L.add_log_file(tmp_path / "a" / "run.log") is first  # idempotent per path
    logging.getLogger("mmlnb_dist.core.y").debug("a per-epoch table")
    second = L.add_log_file(tmp_path / "b.log")
    assert first not in package_logger.handlers and second in package_logger.handlers
    logging.getLogger("mmlnb_dist.core.y").info("after the switch")
    L.remove_log_file(second)
    assert second not in package_logger.handlers
    a, b = (tmp_path / "a" / "run.log").read_text(), (tmp_path / "b.log").read_text()
    assert "DEBUG [mmlnb_dist.core.y] a per-epoch table" in a and "after the switch" not in a
    assert "after the switch" in b


def _command_log_ending(tmp_path, err: BaseException) -> str:
    path = tmp_path / f"{type(err).__name__}.log"
    with pytest.raises(type(err)):
        with L.command_log(path):
            raise err
    assert not any(isinstance(h, logging.FileHandler) and h.baseFilename == str(path.resolve())
                   for h in logging.getLogger(L.PACKAGE).handlers)  # closed once the command ends
    return path.read_text()


def test_a_command_log_ends_with_what_stopped_the_command(package_logger, tmp_path):
    text = _command_log_ending(tmp_path, ConfigError("train.lr: must be positive"))
    assert "ERROR" in text and "stopped: train.lr: must be positive" in text and "Traceback" not in text
    text = _command_log_ending(tmp_path, KeyboardInterrupt())
    assert text.strip().endswith("interrupted") and "Traceback" not in text
    text = _command_log_ending(tmp_path, RuntimeError("worker died"))
    assert "stopped: worker died" in text and "Traceback" in text  # not a user error: the trace is kept
    text = _command_log_ending(tmp_path, SystemExit(0))
    assert "INFO" in text and "stopped early on request (exit code 0)" in text and "ERROR" not in text


def test_a_stop_on_request_is_exit_code_0_or_none_only():
    assert L.stopped_on_request(SystemExit(0)) and L.stopped_on_request(SystemExit(None))
    assert L.stopped_on_request(SystemExit())
    assert not L.stopped_on_request(SystemExit(1)) and not L.stopped_on_request(SystemExit("error"))
    assert not L.stopped_on_request(KeyboardInterrupt())


def test_detail_records_stay_off_the_console_only_inside_a_command_log(package_logger, tmp_path, capsys):
    log = logging.getLogger("mmlnb_dist.core.metrics")
    L.setup_logging(rank=0)
    capsys.readouterr()
    with L.command_log(tmp_path / "c.log"):
        log.info("confusion matrix", extra=L.DETAIL)
        log.info("summary")
    assert _console(capsys) == ["[metrics] summary"]
    assert "confusion matrix" in (tmp_path / "c.log").read_text()
    log.info("confusion matrix", extra=L.DETAIL)  # outside: a single run's console shows its tables
    assert _console(capsys) == ["[metrics] confusion matrix"]


def test_what_a_library_prints_goes_to_the_log_file_not_the_console(package_logger, tmp_path, capsys):
    handler = L.add_log_file(tmp_path / "l.log")
    try:
        with L.library_prints("deepspeed"):
            print("op built successfully")
    finally:
        L.remove_log_file(handler)
    assert "op built successfully" not in capsys.readouterr().out
    assert "deepspeed printed: op built successfully" in (tmp_path / "l.log").read_text()


def test_library_notices_are_dropped_and_their_real_warnings_kept(package_logger, caplog):
    L.quiet_libraries()
    L.quiet_libraries()  # idempotent: one filter
    ds = logging.getLogger("DeepSpeed")
    assert sum(isinstance(f, L._DropNotices) for f in ds.filters) == 1
    assert ds.level == logging.WARNING
    with caplog.at_level(logging.WARNING, logger="DeepSpeed"):
        ds.warning("Setting ds_accelerator to cpu (auto detect)")
        ds.warning("NCCL timeout, the job is about to fail")
    assert [r.getMessage() for r in caplog.records] == ["NCCL timeout, the job is about to fail"]


def test_the_packages_own_deprecation_warnings_still_show():
    """Library deprecations are silenced; this package's own (about the user's config) are not."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        L.quiet_libraries()
        warnings.warn_explicit("old setting", DeprecationWarning, "x.py", 1, module="mmlnb_dist.config")
        warnings.warn_explicit("old api", DeprecationWarning, "y.py", 1, module="somelib.api")
    assert [str(w.message) for w in seen] == ["old setting"]

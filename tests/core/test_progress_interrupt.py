"""After Ctrl-C the console ends with the message that says the work was interrupted, not with a progress bar:
an open bar was redrawn under every message logged while the interrupt unwound (`tqdm.write` redraws open bars)
and closed last of all at garbage collection, redrawn once more below the CLI's "interrupted" line. Now a record
logged during the interrupt, and `command_log` letting it through, close the package's open bars first."""
from __future__ import annotations

import gc
import logging
import sys

import pytest

from mmlnb_dist.core.logging import command_log, setup_logging
from mmlnb_dist.core.progress import PROGRESS_INTERVAL_ENV, progress_bar


@pytest.fixture()
def console(capsys, monkeypatch):
    """What reached the console (stderr: the bars and the log records)."""
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "0")  # redraw at every step, as a terminal would
    setup_logging(0)
    return lambda: capsys.readouterr().err


def _lines(text: str):
    return [part.strip() for line in text.split("\n") for part in line.split("\r") if part.strip()]


def _interrupted_work(leave: bool):
    bar = progress_bar(total=10, desc="epoch 1", leave=leave)
    for step in range(10):
        bar.update()
        if step == 3:
            raise KeyboardInterrupt
    bar.close()


@pytest.mark.parametrize("leave", [True, False])
def test_a_message_logged_while_ctrl_c_unwinds_is_the_last_line(console, leave):
    log = logging.getLogger("mmlnb_dist.test_interrupt")
    with pytest.raises(KeyboardInterrupt):
        try:
            _interrupted_work(leave)
        except KeyboardInterrupt:
            log.warning("stage x: stopped (interrupted)")
            raise
    gc.collect()  # where the bar's own close came, after everything else
    lines = _lines(console())
    assert lines[-1].endswith("stage x: stopped (interrupted)"), lines
    if leave:  # the bar ended where it stood, once, above the message
        assert "epoch 1:  40%" in lines[-2], lines


def test_the_clis_interrupted_line_comes_after_the_bars_of_a_command_log(console, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with command_log(tmp_path / "study.log"):
            _interrupted_work(leave=True)
    print("mmlnb-dist ablate: interrupted", file=sys.stderr)  # what cli.main prints next
    gc.collect()
    lines = _lines(console())
    assert lines[-1] == "mmlnb-dist ablate: interrupted", lines
    assert sum("epoch 1:  40%" in line for line in lines[lines.index(lines[-1]) - 1:]) == 1, lines


def test_a_command_interrupted_without_a_word_ends_with_the_clis_line(console, monkeypatch):
    """`train` logs nothing while Ctrl-C unwinds it: `cli.main`'s own line must still be the last."""
    from mmlnb_dist import cli
    from mmlnb_dist.commands import config_cmd

    bars = []

    def interrupted(args):
        bars.append(progress_bar(total=10, desc="epoch 1", leave=True))
        bars[-1].update(4)
        raise KeyboardInterrupt

    monkeypatch.setattr(config_cmd, "_show", interrupted)
    assert cli.main(["config", "show"]) == 130
    gc.collect()
    lines = _lines(console())
    assert lines[-1] == "mmlnb-dist config: interrupted", lines

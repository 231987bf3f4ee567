"""Progress bars written to a file (a Slurm log, `nohup`, `cmd > log 2>&1`) redraw rarely; on a terminal as tqdm
does. A fine-tuning bar into a log file used to leave one line per step (720 for the demo's VLM stage)."""
from __future__ import annotations

import io
import time

import pytest

from mmlnb_dist.core.progress import PROGRESS_INTERVAL_ENV, progress_bar, redraw_interval


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _redraws(stream: io.StringIO) -> int:
    return len([part for part in stream.getvalue().split("\r") if part.strip()])


def _run(stream, steps: int = 40, pause: float = 0.01) -> None:
    bar = progress_bar(total=steps, file=stream, desc="finetune-vlm")
    for step in range(steps):
        time.sleep(pause)
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}")  # as the training loops do: tqdm redrew on every call
    bar.close()


def test_a_bar_into_a_file_shows_its_start_and_end_not_every_step(monkeypatch):
    monkeypatch.delenv(PROGRESS_INTERVAL_ENV, raising=False)
    log = io.StringIO()
    _run(log)  # 40 steps over about 0.4 s: a terminal bar redraws about 4 times; a file bar only at start and end
    text = log.getvalue()
    assert _redraws(log) == 2 and "0/40" in text and "40/40" in text and "loss=0.025" in text, text
    assert redraw_interval(log) == 30.0 and redraw_interval(Terminal()) == 0.1


def test_the_interval_of_a_file_bar_is_the_users_to_set(monkeypatch):
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "0")
    log = io.StringIO()
    _run(log, steps=5, pause=0.0)
    assert _redraws(log) >= 5  # every step, as asked
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "soon")
    with pytest.raises(ValueError, match="MMLNB_PROGRESS_INTERVAL='soon' is not a number of seconds"):
        redraw_interval(log)


def test_a_disabled_bar_writes_nothing():
    log = io.StringIO()
    for _ in progress_bar(range(3), file=log, enabled=False):
        pass
    assert log.getvalue() == ""


def test_a_passing_bar_into_a_file_leaves_no_stuck_at_zero_line(monkeypatch):
    """A bar that a terminal clears when it ends (`leave=False`: an epoch's steps, an evaluation) left
    `epoch 3:   0%|          | 0/12` in a log file, then a line of spaces, at every epoch: it read as a job stuck at
    0%. Into a file such a bar shows only once it has run for the redraw interval; a kept bar still shows both ends."""
    monkeypatch.delenv(PROGRESS_INTERVAL_ENV, raising=False)
    log = io.StringIO()
    for _ in progress_bar(range(12), file=log, desc="epoch 3", leave=False):
        pass
    assert log.getvalue() == ""
    kept = io.StringIO()
    for _ in progress_bar(range(12), file=kept, desc="shards"):
        pass
    assert "0/12" in kept.getvalue() and "12/12" in kept.getvalue()
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "0")  # a long epoch (here: every redraw asked for) still shows
    slow = io.StringIO()
    for _ in progress_bar(range(3), file=slow, desc="epoch 4", leave=False):
        pass
    assert "epoch 4" in slow.getvalue() and "3/3" in slow.getvalue()
    terminal = Terminal()
    for _ in progress_bar(range(3), file=terminal, desc="epoch 5", leave=False):
        pass
    assert "epoch 5" in terminal.getvalue()  # a terminal bar shows at once, as tqdm's do

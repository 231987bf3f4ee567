"""Progress-bar settings, found unguarded by a mutation audit of `core/progress.py`: a negative
`MMLNB_PROGRESS_INTERVAL` is refused with its name, and a caller's own `mininterval`/`delay` win over the file
default."""
from __future__ import annotations

import io

import pytest

from mmlnb_dist.core.progress import PROGRESS_INTERVAL_ENV, is_terminal, progress_bar, redraw_interval


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Closed(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_a_negative_interval_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "-1")
    with pytest.raises(ValueError, match=r"MMLNB_PROGRESS_INTERVAL='-1' must be at least 0"):
        redraw_interval(io.StringIO())
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "2.5")
    assert redraw_interval(io.StringIO()) == 2.5
    assert redraw_interval(Terminal()) == 0.1  # a terminal keeps tqdm's own, whatever the variable says


def test_a_stream_is_a_terminal_only_when_it_says_so():
    assert is_terminal(Terminal()) and not is_terminal(Closed()) and not is_terminal(object())


def test_a_callers_own_intervals_win_over_the_file_default(monkeypatch):
    monkeypatch.delenv(PROGRESS_INTERVAL_ENV, raising=False)
    bar = progress_bar(total=3, file=io.StringIO(), mininterval=1.5, leave=False, delay=0.5)
    assert (bar.mininterval, bar.delay) == (1.5, 0.5)
    bar.close()
    bar = progress_bar(total=3, file=io.StringIO(), leave=False)
    assert (bar.mininterval, bar.delay) == (30.0, 30.0)
    bar.close()
    kept = progress_bar(total=3, file=io.StringIO())
    assert kept.delay == 0  # a kept bar shows at once
    kept.close()


def test_library_bars_the_user_turned_off_stay_off_and_the_others_are_transient(monkeypatch):
    from transformers.utils import logging as hf_logging

    from mmlnb_dist.core import progress

    made = []

    def factory(*args, **kwargs):
        made.append((args, kwargs))
        return "transformers' own bar"

    monkeypatch.setattr(hf_logging, "is_progress_bar_enabled", lambda: False)
    assert progress._transient_library_bar(factory, (range(2),), {"desc": "Loading weights"}) == "transformers' own bar"
    assert made == [((range(2),), {"desc": "Loading weights"})]
    monkeypatch.setattr(hf_logging, "is_progress_bar_enabled", lambda: True)
    bar = progress._transient_library_bar(factory, (), {"total": 2, "desc": "Loading weights", "file": Terminal()})
    assert isinstance(bar, progress.ProgressBar) and bar.leave is False and len(made) == 1
    bar.close()

"""A `data synth` stopped part-way (Ctrl-C, a scheduler's SIGTERM) with a process pool: the pool was closed and
joined, which let its workers render every patch still queued (minutes for `--n 400000`) before the command could
end. Stopped, the generator ends its workers at once."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

import mmlnb_dist.data.synthetic as synthetic
from mmlnb_dist.data.synthetic import make_synthetic_dataset

STATE: dict = {}  # the real renderer and the folder where workers mark the patches they start (set before forking)


def slow_render(job):
    """The real renderer, marking each patch it starts; slow after the first few, as large patches are."""
    Path(STATE["marks"], str(job[0])).touch()
    if job[0] >= 8:
        time.sleep(0.1)
    return STATE["render"](job)


def test_stopped_synth_ends_its_workers_instead_of_rendering_the_queue(tmp_path, monkeypatch):
    marks = tmp_path / "started"
    marks.mkdir()
    monkeypatch.setitem(STATE, "render", synthetic._render_item)
    monkeypatch.setitem(STATE, "marks", marks)
    monkeypatch.setattr(synthetic, "_render_item", slow_render)

    def stopped_after_three(items, **_):
        for k, item in enumerate(items):
            if k == 3:
                raise KeyboardInterrupt  # the user's Ctrl-C (SIGTERM raises the same), part-way
            yield item

    monkeypatch.setattr(synthetic, "progress_bar", stopped_after_three)
    n = 64
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_dataset(tmp_path / "src", n=n, size=16, n_slides=3, seed=1, workers=2)
    started = len(list(marks.iterdir()))
    assert started < n // 2, f"the pool's workers went on to start {started} of {n} patches after the stop"

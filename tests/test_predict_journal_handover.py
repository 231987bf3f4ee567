"""A `predict` job that finishes removes its resume folder `<out>.resume/`, lock file included. It released the lock
first and removed the folder after: a job into the same `--out` that started in between took the lock, lost its
lock file to the removal, and a third job then got a lock of its own, both writing one output. The folder is now
removed while the finishing job still holds it, so the lock passes to the next job whole."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.runlock import FolderInUseError
from mmlnb_dist.predict.journal import PredictJournal


@pytest.mark.parametrize("end", ["finish", "release"])
def test_a_job_starting_as_another_ends_keeps_the_output_to_itself(tmp_path, end):
    out = tmp_path / "p.csv"
    first = PredictJournal(out).lock()
    if end == "finish":
        first.resume({"model": "m"})
    second = PredictJournal(out)
    let_go = first._lock.release

    def release_and_the_next_job_starts():
        let_go()
        second.lock()  # the next job into `out` starts the moment the lock is free

    first._lock.release = release_and_the_next_job_starts
    getattr(first, end)()
    assert second._lock.held
    with pytest.raises(FolderInUseError):
        PredictJournal(out).lock()  # a third job is refused: the second one has the output
    second.release()

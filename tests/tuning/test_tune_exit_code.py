"""`mmlnb-dist tune`'s exit code says whether the search gave an answer: 0 with a best trial, 1 with errored trials,
and 1 when no trial ended with a finite metric (every one diverged): the search picked nothing, and used to end
with 0 and no best config."""
from __future__ import annotations

import contextlib
import io

import pytest

from mmlnb_dist.cli import main


@pytest.mark.parametrize("summary, code, says", [
    ({"trials": 2, "errored": 0, "diverged": 1, "best_config": "best.yaml"}, 0, "best config: best.yaml"),
    ({"trials": 2, "errored": 1, "diverged": 0, "best_config": "best.yaml"}, 1, "best config: best.yaml"),
    ({"trials": 2, "errored": 0, "diverged": 2, "figure": "/s/search/search.png"}, 1,
     "no trial ended with a finite val/balanced_accuracy (2 of 2 diverged, 0 errored): nothing to pick; see "
     "/s/search/trials.csv"),  # the file named where it is (the folder was only in the JSON above)
])
def test_the_exit_code_says_whether_the_search_picked_a_configuration(monkeypatch, summary, code, says):
    from mmlnb_dist.tuning import driver

    monkeypatch.setattr(driver, "run_search", lambda cfg, space: summary)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        got = main(["tune", "--config", "cpu-demo"])
    assert got == code, (out.getvalue(), err.getvalue())
    assert says in out.getvalue() + err.getvalue()

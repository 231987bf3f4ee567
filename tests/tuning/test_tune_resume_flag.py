"""`mmlnb-dist tune --resume`, as Ray Tune's and other tools' users spell it, was answered with the top-level usage and
"unrecognized arguments: --resume". Like `train --resume`, it is now refused naming the override that resumes a
search (`tune.resume=true`, same tune.name), with tune's own usage, before any config is read."""
from __future__ import annotations

import contextlib
import io

import pytest

from mmlnb_dist.cli import main


def test_tune_resume_flag_names_the_override(monkeypatch):
    from mmlnb_dist.tuning import driver

    monkeypatch.setattr(driver, "run_search", lambda cfg, space: pytest.fail("the search ran"))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as stop:
        main(["tune", "--config", "cpu-demo", "--resume"])
    assert stop.value.code == 2
    assert "usage: mmlnb-dist tune" in err.getvalue(), err.getvalue()
    assert "--resume: no such option; resume the search with the override tune.resume=true" in err.getvalue()

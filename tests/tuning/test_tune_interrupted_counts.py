"""What `summary.json` counts as stopped early: trials the ASHA scheduler stopped. A trial the user's Ctrl-C cut
off (Tune ends it as TERMINATED, like an ASHA stop, without a result) was counted as stopped early, also under
FIFO, which never stops a trial; it is unfinished, and the resume runs it again."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.tuning.outcome import finish

METRIC = "val/balanced_accuracy"


def _rows(tmp_path):
    return [{"status": "OK", "completed": True, "trial_id": "a", "train.lr": 1e-3, METRIC: 0.7,
             "run_dir": str(tmp_path / "a")},
            {"status": "OK", "completed": False, "trial_id": "b", "train.lr": 1e-4, METRIC: 0.5,
             "run_dir": str(tmp_path / "b")}]


@pytest.mark.parametrize("scheduler, interrupted, stopped_early, unfinished", [
    ("asha", False, 1, 0),  # a finished search: ASHA stopped it
    ("fifo", False, 0, 1),  # FIFO stops nothing: a trial without its result did not finish
    ("asha", True, 0, 1),   # cut off by the stop: the resume runs it again
    ("fifo", True, 0, 1),
])
def test_only_the_scheduler_s_stops_count_as_stopped_early(tmp_path, scheduler, interrupted, stopped_early,
                                                           unfinished):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", f"tune.scheduler={scheduler}",
                                   "tracking.backends=[stdout]"])
    dirs = {"exp": tmp_path / "exp", "cache": tmp_path / "cache", "trials": tmp_path, "best": tmp_path / "best.yaml"}
    dirs["exp"].mkdir()
    summary = finish(cfg, _rows(tmp_path), dirs, None, None, {"train.lr": {}}, 1.0, {}, interrupted=interrupted)
    assert (summary["stopped_early"], summary.get("unfinished", 0)) == (stopped_early, unfinished), summary

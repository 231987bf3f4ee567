"""A search's parent run finds the trial that won by its run-folder tag (`ParentRun.child_with_tag`, what the
search's register step registers). It read one page of children, MLflow's default of 1000: in a search of more
trials, a winner past the first page was not found and nothing was registered; then every page was read, one
request per 1000 trials. Now the server filters on the tag too: one request."""
from __future__ import annotations

import pytest

from support.fake_mlflow import URI, install

from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking.runs import ParentRun


@pytest.fixture
def stores(monkeypatch):
    return install(monkeypatch)


def test_the_child_is_found_past_the_first_page_of_children(tmp_path, stores):
    parent = ParentRun.open(TrackingConfig(), URI, tmp_path, "search")
    exp = stores[URI].runs[parent.run_id].info.experiment_id
    for i in range(1200):
        stores[URI].create_run(exp, tags={"mlflow.parentRunId": parent.run_id, "run_dir": f"/runs/trial-{i}"})
    won = stores[URI].create_run(exp, tags={"mlflow.parentRunId": parent.run_id, "run_dir": "/runs/trial-best"})
    searches = stores[URI].searches
    assert parent.child_with_tag("run_dir", "/runs/trial-best") == won.info.run_id
    assert stores[URI].searches == searches + 1  # filtered by the server: not every page of children read
    assert parent.child_with_tag("run_dir", "/runs/trial-5") is not None
    assert parent.child_with_tag("run_dir", "/runs/none") is None
    quoted = stores[URI].create_run(exp, tags={"mlflow.parentRunId": parent.run_id, "run_dir": "/runs/o'brien"})
    assert parent.child_with_tag("run_dir", "/runs/o'brien") == quoted.info.run_id  # no filter can quote it

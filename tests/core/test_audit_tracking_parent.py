"""Mutation-audit guards of a search's parent run (`core/tracking/runs.py`): its artifacts, long params cut to
what MLflow takes, and a summary whose parts go each on its own, so one refused part never leaves the run
RUNNING. In-memory MLflow stores (`support.fake_mlflow`) keep them fast."""
from __future__ import annotations

import pytest

from support.fake_mlflow import URI, install

from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking.runs import ParentRun


@pytest.fixture
def store(monkeypatch):
    return install(monkeypatch)[URI]


def test_a_parent_run_gets_its_artifacts_under_search_and_long_params_cut(tmp_path, store):
    spec = tmp_path / "space.yaml"
    spec.write_text("lr: [0.1]\n")
    parent = ParentRun.open(TrackingConfig(), URI, tmp_path, "search", params={"prompt": "p" * 7000},
                            artifacts=[spec])
    assert store.artifacts == [(parent.run_id, "space.yaml", "search")]
    assert len(store.runs[parent.run_id].data.params["prompt"]) == 6000


def test_a_refused_summary_part_still_logs_the_others_and_ends_the_run(tmp_path, store):
    """The metrics refused (a lost request): the tags, the artifacts and the run's end still go."""
    parent = ParentRun.open(TrackingConfig(), URI, tmp_path, "search")
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    store.fail_on = "metrics"
    parent.finish(metrics={"best": 1.0}, tags={"best_trial": "3"}, artifacts=[summary], status="FINISHED")
    run = store.runs[parent.run_id]
    assert run.data.tags["best_trial"] == "3" and run.info.status == "FINISHED"
    assert store.artifacts == [(parent.run_id, "summary.json", "search")]


def test_a_resumed_search_keeps_its_parent_run_through_a_server_error(tmp_path, store):
    """Reading the recorded parent run failed with a server error (a 503), taken for "the run is gone": a second
    parent run was made, and the resumed search's trials were split between two parents. Only "no such run" makes
    a new one."""
    first = ParentRun.open(TrackingConfig(), URI, tmp_path, "search")
    store.fail_on = "get_run"
    again = ParentRun.open(TrackingConfig(), URI, tmp_path, "search", resume_id=first.run_id)
    assert again.run_id == first.run_id and list(store.runs) == [first.run_id]
    store.fail_on = None
    store.runs.clear()  # a fresh store: the recorded run is gone
    assert ParentRun.open(TrackingConfig(), URI, tmp_path, "search", resume_id=first.run_id).run_id in store.runs

"""A search's parent-run summary goes out within MLflow's `log_batch` limits (100 tags, 1000 metrics per request):
`ParentRun.finish` sent all tags in one request and all metrics in another, so a summary of a large search (a tag
or metric per trial) was refused whole and the parent run showed none of it."""
from __future__ import annotations

import pytest

from support.fake_mlflow import URI, install

from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking.runs import ParentRun


@pytest.fixture
def store(monkeypatch):
    return install(monkeypatch)[URI]


def test_a_summary_over_mlflows_batch_limits_is_logged_whole(tmp_path, store):
    parent = ParentRun.open(TrackingConfig(), URI, tmp_path, "search")
    tags = {f"trial.{i}.status": "TERMINATED" for i in range(250)}
    metrics = {f"trial/{i}/score": float(i) for i in range(1500)}
    parent.finish(metrics=metrics, tags=tags, step=4)
    run = store.runs[parent.run_id]
    assert {k: v for k, v in run.data.tags.items() if k.startswith("trial.")} == tags
    logged = {key: (step, value) for rid, key, step, value in store.metrics if rid == parent.run_id}
    assert logged == {k: (4, v) for k, v in metrics.items()}
    assert max(store.batches) <= 1000 and run.info.status == "FINISHED"

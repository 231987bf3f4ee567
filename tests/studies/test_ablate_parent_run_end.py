"""An `ablate` study stopped by Ctrl-C (or failing) ends its MLflow parent run KILLED (FAILED), as a search's does:
it stayed RUNNING for good, so the experiment listed a study that no longer ran."""
from __future__ import annotations

import pytest

from support.clip import caption_shards, clip_config


@pytest.mark.parametrize("stop, status", [(KeyboardInterrupt, "KILLED"), (RuntimeError, "FAILED")])
def test_a_stopped_study_ends_its_parent_run(tmp_path, stop, status):
    import mlflow

    from mmlnb_dist.studies import run_study

    shards = caption_shards(tmp_path / "data", n=24, size=32, test_fraction=0.25)
    cfg = clip_config(shards, tmp_path / "runs", "train.epochs=1", "tracking.backends=[mlflow]", name="stopped")

    def stopped(cfg, jobs):
        raise stop("stopped while training the rows")

    with pytest.raises(stop):
        run_study(cfg, rows=["text_only", "concat"], seeds=[0], train_jobs=stopped)
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.info.run_name.endswith("-study")]
    assert len(parents) == 1 and parents[0].info.status == status, [(r.info.run_name, r.info.status) for r in runs]

"""`register --run` reads a run's own settings (`train.recipe`, `train.best_metric`) at the values the run ended
with. MLflow keeps a param's first value and a resume that changed it logs the new one as a
`param_changed.<key>` tag: `find_run` returned the first values, so a run resumed with another
`train.best_metric` was registered (and its alias moved) on the metric it no longer selected its checkpoint by."""
from __future__ import annotations

from mmlnb_dist.core.tracking.registry import find_run

from support.fake_mlflow import URI, install


def test_a_param_changed_on_resume_is_read_at_its_new_value(monkeypatch):
    store = install(monkeypatch)[URI]
    exp = store.create_experiment("e")
    run = store.create_run(exp, tags={"param_changed.train.best_metric": "val/auroc"})
    run.data.params.update({"train.best_metric": "val/balanced_accuracy", "train.recipe": "fusion"})
    found = find_run(run.info.run_id, URI)
    assert found.params["train.best_metric"] == "val/auroc" and found.params["train.recipe"] == "fusion"

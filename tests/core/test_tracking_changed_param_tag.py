"""A param a resume changes keeps its first value and the new one goes to a `param_changed.<key>` tag. The tag was
cut to 5000 characters without a word, though MLflow keeps 8000 in a tag and a param value is at most 6000: a
changed value of 5000-6000 characters (a prompt, a long list) was recorded cut, as if it were the whole value."""
from __future__ import annotations

from mmlnb_dist.core.tracking.events import log_params
from mmlnb_dist.core.tracking.params import PARAM_VALUE_LIMIT, param_values


def test_a_changed_param_is_recorded_whole_in_its_tag(tmp_path):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("changed")).info.run_id
    log_params(client, run_id, param_values({"vlm.prompt": "Describe the patch.", "train.epochs": 2}))
    prompt = "Describe the tissue, its cells and their arrangement. " * 110  # a resume's new, long prompt
    log_params(client, run_id, param_values({"vlm.prompt": prompt, "train.epochs": 2}))
    run = client.get_run(run_id)
    assert run.data.params["vlm.prompt"] == "Describe the patch."
    assert run.data.tags["param_changed.vlm.prompt"] == prompt[:PARAM_VALUE_LIMIT]
    assert "param_changed.train.epochs" not in run.data.tags

"""What a user of the tracking settings hit (defect hunt, known items); each test names it.

- `tracking.register_alias=null` (or `None`, `~` in a YAML file) was the alias named "null" ("None"): the model was
  registered, and an alias of that name moved to it. `null` now means no alias, as `''` (and `register --alias ''`)
  already did: a new version is registered and no alias moves.
- `tracking.backends=[stdout,stdout]` (or mlflow twice) was accepted: every metric was logged twice (to MLflow, two
  loggers of one run). A backend listed twice is refused, naming it.
- `ParentRun.finish` (the tune / study parent run) sent metric names as given, while the per-run loggers rename the
  ones MLflow refuses (`metric_name.mlflow_key`): the whole metrics batch of the parent was refused and lost.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "mmlnb_dist" / "profiles" / "cpu-demo.yaml"


@pytest.mark.parametrize("typed", ["null", "None", "NULL", "~", "''"])
def test_a_null_register_alias_is_no_alias_not_an_alias_named_null(typed):
    assert load_config(CPU_DEMO, [f"tracking.register_alias={typed}"]).tracking.register_alias == ""


def test_a_null_register_alias_in_a_yaml_file_is_no_alias(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tracking:\n  register_alias: null\n")
    assert load_config(path).tracking.register_alias == ""


def test_the_default_alias_and_a_named_one_are_kept():
    assert load_config(CPU_DEMO).tracking.register_alias == "champion"
    assert load_config(CPU_DEMO, ["tracking.register_alias=prod"]).tracking.register_alias == "prod"


@pytest.mark.parametrize("backends, twice", [("[stdout,stdout]", "stdout"), ("[mlflow,stdout,mlflow]", "mlflow"),
                                             ("stdout,stdout", "stdout")])
def test_a_backend_listed_twice_is_refused_naming_it(backends, twice):
    with pytest.raises(ConfigError) as err:
        load_config(CPU_DEMO, [f"tracking.backends={backends}"])
    assert "tracking.backends" in str(err.value) and f"{twice} is listed twice" in str(err.value), err.value


@pytest.mark.parametrize("backends", ["[stdout]", "[mlflow,stdout]", "[]"])
def test_backends_each_listed_once_are_accepted(backends):
    load_config(CPU_DEMO, [f"tracking.backends={backends}"])


def test_a_parent_run_logs_a_metric_name_mlflow_refuses_under_the_name_the_runs_use(tmp_path):
    import mlflow

    from mmlnb_dist.core.sections import TrackingConfig
    from mmlnb_dist.core.tracking.metric_name import mlflow_key
    from mmlnb_dist.core.tracking.runs import ParentRun

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = ParentRun.open(TrackingConfig(), uri, tmp_path, "search")
    parent.finish(metrics={"best/val/acc@5": 0.75, "best/val/loss": 0.5}, tags={"best_trial": "2"})
    run = mlflow.MlflowClient(uri).get_run(parent.run_id)
    assert mlflow_key("best/val/acc@5") == "best/val/acc_5"
    assert run.data.metrics == {"best/val/acc_5": 0.75, "best/val/loss": 0.5}
    assert run.data.tags["best_trial"] == "2" and run.info.status == "FINISHED"


def test_a_parent_run_refuses_two_metric_names_mlflow_takes_as_one_key_and_still_ends(tmp_path, caplog):
    """`best/val/acc@5` and `best/val/acc_5` are one MLflow key: one value was dropped without a word. The summary's
    metrics are refused naming both (warned: the summary stays on disk), its tags and end still go."""
    import mlflow

    from mmlnb_dist.core.sections import TrackingConfig
    from mmlnb_dist.core.tracking.runs import ParentRun

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = ParentRun.open(TrackingConfig(), uri, tmp_path, "search")
    parent.finish(metrics={"best/val/acc@5": 0.75, "best/val/acc_5": 0.5}, tags={"best_trial": "2"})
    run = mlflow.MlflowClient(uri).get_run(parent.run_id)
    assert "best/val/acc_5" not in run.data.metrics
    assert run.data.tags["best_trial"] == "2" and run.info.status == "FINISHED"
    assert any("'best/val/acc@5' and 'best/val/acc_5'" in r.getMessage() for r in caplog.records)

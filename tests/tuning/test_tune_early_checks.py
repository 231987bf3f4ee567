"""Settings the searcher or the scheduler cannot take are refused before anything is written. They were found only
after the search folder (search.json) and the MLflow parent run existed: `--space optimisation tune.searcher=grid`
(exit 2, but after Ray started) and `train.epochs=2 tune.grace_period=5` (Ray's raw `AssertionError: grace_period
must be <= max_t!`, exit 1), so the corrected command was refused as "already exists ... resume" and the parent run
stayed RUNNING. `checks.check_search` is also what `config validate` can run."""
from __future__ import annotations

import contextlib
import io

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError

SMOKE = "tune.recipe=mmlnb_dist.tuning.smoke:run"  # a recipe outside the table: no shard set is checked


def _cfg(tmp_path, *extra):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[mlflow]", SMOKE,
                                    "tune.num_cpus=2", *extra])


CASES = [
    (["tune.searcher=grid"], "optimisation",
     r"searcher=grid needs 'choice' or 'grid' values for 'train\.lr'.*tune\.searcher=random"),
    (["train.epochs=2", "tune.grace_period=5"], "optimisation",
     r"tune\.grace_period=5 is more than train\.epochs=2.*at most 2"),
    (["train.epochs=6", "tune.max_t=3", "tune.grace_period=4"], "optimisation",
     r"tune\.grace_period=4 is more than tune\.max_t=3.*at most 3"),
]


@pytest.mark.parametrize("extra, space, says", CASES)
def test_refused_before_the_search_folder_or_the_parent_run_exist(tmp_path, monkeypatch, extra, space, says):
    from mmlnb_dist.tuning import driver

    monkeypatch.setattr(driver, "_init_ray", lambda cfg: pytest.fail("Ray started"))
    with pytest.raises(ConfigError, match=says):
        driver.run_search(_cfg(tmp_path, *extra), space)
    assert not (tmp_path / "runs" / "tune").exists()  # no search.json: the corrected command is not refused
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # no parent run left RUNNING


@pytest.mark.parametrize("extra, space, says", CASES)
def test_the_config_check_finds_them(tmp_path, extra, space, says):
    from mmlnb_dist.tuning.checks import check_search

    overrides = [*extra] + ([f"tune.space={space}"] if space else [])
    with pytest.raises(ConfigError, match=says):
        check_search(_cfg(tmp_path, *overrides))


@pytest.mark.parametrize("extra", [
    ["train.epochs=2", "tune.grace_period=2"],
    ["train.epochs=2", "tune.grace_period=5", "tune.scheduler=fifo"],  # no ASHA: no grace period
    ["train.epochs=2", "tune.grace_period=3", "tune.max_t=4"],
    ["tune.searcher=grid", "tune.space=lora"],  # every key of the lora space is a choice
    ["tune.searcher=optuna", "tune.space=optimisation"],
])
def test_settings_the_search_takes_pass(tmp_path, extra):
    from mmlnb_dist.tuning.checks import check_search

    check_search(_cfg(tmp_path, *extra))


def test_the_tune_command_exits_2_naming_the_settings(tmp_path):
    from mmlnb_dist.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["tune", "--config", "cpu-demo", "--space", "optimisation", f"run.output_dir={tmp_path}/runs",
                     SMOKE, "train.epochs=2", "tune.grace_period=5", "tune.num_cpus=2"])
    assert code == 2 and "tune.grace_period=5 is more than train.epochs=2" in err.getvalue(), err.getvalue()
    assert "Traceback" not in err.getvalue() and not (tmp_path / "runs" / "tune").exists()


def test_config_validate_runs_the_search_checks(capsys):
    """`config validate` said ok for a config whose search Ray would refuse at its start."""
    from mmlnb_dist.cli import main

    code = main(["config", "validate", "--config", "launch/profiles/cpu-demo.yaml", "train.epochs=2",
                 "tune.grace_period=5"])
    err = capsys.readouterr().err
    assert code == 2 and "tune.grace_period=5" in err and "train.epochs=2" in err, err

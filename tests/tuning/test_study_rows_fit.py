"""`ablate ... tune.max_concurrent=2` runs its rows as Ray Tune trials of one rank with `tune.cpus_per_trial` /
`tune.gpus_per_trial` each. A row asking more than the local Ray instance has was never refused: Tune waited for it
forever (a warning a minute), after the study had fine-tuned the VLM and described the shards. Now the command
refuses it before anything runs (exit code 2, naming the settings), as `tune` does its trials."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config

FITS_NOWHERE = ["tune.max_concurrent=2", "tune.num_cpus=2", "tune.cpus_per_trial=3", "tune.address=null"]


def test_ablate_refuses_rows_no_local_instance_can_place_before_any_stage(tmp_path, monkeypatch, capsys):
    import mmlnb_dist.studies as studies
    from mmlnb_dist.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(studies, "run_study", lambda *a, **k: pytest.fail("the study started: its rows never fit"))
    code = main(["ablate", "--config", "cpu-demo", f"run.output_dir={tmp_path}", *FITS_NOWHERE])
    err = capsys.readouterr().err
    assert code == 2
    assert "one trial needs 3 CPU (1 rank(s) x 3 CPU)" in err and "has 2 CPU" in err
    assert "lower tune.cpus_per_trial" in err and "workers_per_trial" not in err


def test_train_as_trials_refuses_before_ray_starts(tmp_path, monkeypatch):
    """Called on its own (the API, not the command) it refuses too; a row that exactly fits is not refused."""
    import ray

    from mmlnb_dist.studies import RowJob
    from mmlnb_dist.tuning.checks import SearchError
    from mmlnb_dist.tuning.study import train_as_trials

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started for rows it can never place"))
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", *FITS_NOWHERE])
    job = RowJob("full", 0, load_config("cpu-demo", [f"run.output_dir={tmp_path}/study", "run.name=full-seed0"]),
                 "f" * 16)
    with pytest.raises(SearchError, match="one trial needs 3 CPU"):
        train_as_trials(cfg, {job.name: job})
    from mmlnb_dist.tuning.study import check_rows_fit

    check_rows_fit(load_config("cpu-demo", [f"run.output_dir={tmp_path}", "tune.num_cpus=2", "tune.address=null",
                                            "tune.cpus_per_trial=2"]))


@pytest.mark.parametrize("extra, named", [(["tune.workers_per_trial=2"], "tune.workers_per_trial=2"),
                                          (["tune.use_ray_train=true"], "tune.use_ray_train=true"),
                                          (["tune.gpus_per_trial=2"], "tune.gpus_per_trial=2")])
def test_ablate_refuses_rows_of_several_ranks_or_gpus(tmp_path, monkeypatch, capsys, extra, named):
    """A row's trial runs one rank in its own process: `tune.workers_per_trial=2` (or a worker group, or two GPUs a
    trial) was accepted and each row trained on one rank and one GPU, without a word."""
    import mmlnb_dist.studies as studies
    from mmlnb_dist.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(studies, "run_study", lambda *a, **k: pytest.fail("the study started: its rows would run on one rank"))
    code = main(["ablate", "--config", "cpu-demo", f"run.output_dir={tmp_path}", "tune.max_concurrent=2",
                 "tune.address=auto", *extra])  # a cluster: its resources are not checked, the ranks are
    err = capsys.readouterr().err
    assert code == 2
    assert f"{named}: ablate runs each row as a Ray Tune trial of one rank" in err

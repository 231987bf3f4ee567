"""One driver per search folder. Two searches with the same name started together both ran in one folder (two
experiment states, trials.csv from the last; on a fresh folder the second died in a raw SQLAlchemy "table already
exists" traceback): the "already exists" check and the write of search.json were not one step. The search folder
is now held by the project's one-job-per-output lock (`core.runlock.FolderLock`) for the whole search, and a
second search is refused (exit 2) naming the holder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.runlock import FolderInUseError, FolderLock

SMOKE = "tune.recipe=mmlnb_dist.tuning.smoke:run"


def _cfg(tmp_path, *extra):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[mlflow]", SMOKE,
                                    "tune.num_cpus=2", "train.epochs=2", "tune.num_samples=1", *extra])


def test_a_search_whose_folder_another_holds_is_refused_naming_the_holder(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import driver

    monkeypatch.setattr(driver, "_init_ray", lambda cfg: pytest.fail("Ray started"))
    exp = tmp_path / "runs" / "tune" / "search"
    with FolderLock(exp, "mmlnb-dist tune"):  # the other search, which has not written search.json yet
        with pytest.raises(driver.SearchError, match=rf"search 'search' at {exp} is in use by `mmlnb-dist tune` "
                                                     rf"\(pid {os.getpid()} .*tune.name"):
            driver.run_search(_cfg(tmp_path), "optimisation")
    assert not (exp / "search.json").exists() and not (tmp_path / "runs" / "mlflow.db").exists()


def test_the_folder_is_held_for_the_whole_search_and_released_after(tmp_path, monkeypatch):
    from ray import tune

    from mmlnb_dist.tuning import driver

    exp = tmp_path / "runs" / "tune" / "held"
    held = []

    class Tuner:
        def __init__(self, *args, **kwargs):
            pass

        def fit(self):
            try:
                FolderLock(exp, "probe").refuse_if_held()
            except FolderInUseError:
                held.append(True)
            return []

    monkeypatch.setattr(driver, "_init_ray", lambda cfg: False)
    monkeypatch.setattr(tune, "Tuner", Tuner)
    monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: fn)
    monkeypatch.setattr(tune, "with_resources", lambda fn, res: fn)
    driver.run_search(_cfg(tmp_path, "tune.name=held", "tracking.backends=[stdout]"), "optimisation")
    assert held == [True]
    FolderLock(exp, "probe").refuse_if_held()  # released


@pytest.mark.slow
def test_two_searches_started_together_one_runs_the_other_is_refused(tmp_path):
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "mmlnb_dist.cli", "tune", "--config", "cpu-demo", "--space", "optimisation",
           f"run.output_dir={tmp_path}/runs", "tracking.backends=[mlflow]", SMOKE, "tune.num_cpus=2",
           "train.epochs=2", "tune.num_samples=1", "tune.scheduler=fifo"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    procs = [subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        outs.append((proc.returncode, out, err))
    codes = sorted(code for code, _, _ in outs)
    assert codes == [0, 2], [(c, e[-2000:]) for c, _, e in outs]
    refused = next(err for code, _, err in outs if code == 2)
    assert "is in use by `mmlnb-dist tune`" in refused and "Traceback" not in refused, refused
    exp = tmp_path / "runs" / "tune" / "search"
    assert len(list(exp.glob("experiment_state-*.json"))) == 1

"""Concurrent trials on a SQLite store log through the search's temporary MLflow server, but their run folders
record the store itself: the server's address is dead once the search ends, and `tracking import`, a resume of the
trial outside the search, or the search's next resume read the folder's config.yaml for the store."""
from __future__ import annotations

import yaml
from support.fake_mlflow import URI, install

from mmlnb_dist.config import config_from_dict, load_config
from mmlnb_dist.core.tracking import build_logger, recorded_config
from mmlnb_dist.core.tracking.journal import recorded_run


def test_a_trial_logs_through_the_server_and_its_config_yaml_names_the_sqlite_store(tmp_path, monkeypatch):
    from mmlnb_dist.core.tracking import server
    from mmlnb_dist.tuning.driver import _dirs, _tracking
    from mmlnb_dist.tuning.trial import trial_config

    stores = install(monkeypatch)  # URI: the search's server (fake)
    monkeypatch.setattr(server, "start_server", lambda uri, *a, **kw: ("proc", URI))
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[mlflow]",
                                   "tracking.log_environment=false", "tune.max_concurrent=2"])
    store, server_uri, _ = _tracking(cfg, _dirs(cfg))
    ctx = {"base": cfg.model_dump(mode="json"), "space": {}, "name": "s", "trials_dir": str(tmp_path / "trials"),
           "cache_dir": str(tmp_path / "c"), "uri": store, "server": server_uri, "parent_run_id": None}
    trial = config_from_dict(trial_config({}, ctx, "t0")["cfg"], "trial t0")
    run_dir = trial.run.dir
    logger = build_logger(trial.tracking, trial.run, 0, run_dir, "train", config=trial)
    logger.close()

    sqlite_store = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    assert list(stores[URI].runs) == [logger.run_id]  # logged through the server
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["tracking"]
    assert (saved["uri"], saved["server"]) == (sqlite_store, None), saved
    # what the MLflow run keeps of the config names the store too, not the server of one search
    params = stores[URI].runs[logger.run_id].data.params
    assert (params["tracking.uri"], params.get("tracking.server")) == (sqlite_store, "None"), params
    # the folder's run record (read by `register --run`, `tracking sync` and a resume) names the store as well
    record = recorded_run(run_dir, "train")
    assert (record["run_id"], record["tracking_uri"]) == (logger.run_id, sqlite_store), record


def test_a_config_without_a_server_is_recorded_as_it_is():
    cfg = load_config("cpu-demo", ["tracking.uri=http://mlflow.example:5000"])
    assert recorded_config(cfg) is cfg


def test_a_trial_resumed_by_a_resumed_search_continues_its_run_through_the_new_server(tmp_path, monkeypatch):
    """A resumed search starts its server on another port: the trial's run, recorded by its store, goes on."""
    stores = install(monkeypatch)
    stores["http://127.0.0.1:2"] = stores["http://127.0.0.1:1"]  # two searches' servers of one SQLite store
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mlflow.db").touch()  # made by the first server (a resume refuses a store that is gone)
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "run.name=s-t0", "tracking.backends=[mlflow]",
                                   f"tracking.uri=sqlite:///{tmp_path}/runs/mlflow.db", "tracking.log_environment=false"])

    def attempt(port, resume):
        run = cfg.run.model_copy(update={"resume": resume})
        tracking = cfg.tracking.model_copy(update={"server": f"http://127.0.0.1:{port}"})
        logger = build_logger(tracking, run, 0, run.dir, "train", config=cfg)
        logger.close(status="KILLED")
        return logger.run_id
    first = attempt(1, resume=False)
    assert attempt(2, resume=True) == first and list(stores["http://127.0.0.1:1"].runs) == [first]

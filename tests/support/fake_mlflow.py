"""An in-memory stand-in for MLflow's tracking client, one store per tracking URI, that keeps the tracking tests
fast (no store, no server).

    servers = install(monkeypatch)          # every `mlflow.MlflowClient(uri)` is now `servers[uri]`
    servers[URI].down = True                # `server_reachable(URI)` is False: the server cannot be reached
    servers[URI].fail_on = "metrics"        # the server goes away mid-run: that kind of call raises
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow

from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking import mlflow_logger, runs, server

URI = "http://tracking.invalid:5000"
OTHER = "http://other.invalid:5000"
"""A second store: a resume or a `tracking sync --uri` elsewhere."""


class FakeStore:
    """One tracking server's store: just what the journal, the MLflow logger and `ParentRun` call.

    It keeps experiments, runs (tags, params, status, end time), every metric point sent, in order (`metrics`:
    (run id, key, step, value)), the size of each metrics request (`batches`), each artifact logged (`artifacts`:
    (run id, file name, artifact path)) and each logging call, in order (`calls`: (kind, run id)).
    `down`: `server_reachable` says no. `fail_on`: a kind of logging call ("metrics", "params", "tags", "set_tag",
    "delete_tag", "resume", "close", "artifact", "inputs"), or "all", that raises `ConnectionError`; "get_run":
    reading a run fails with a server error (TEMPORARILY_UNAVAILABLE; a missing run is RESOURCE_DOES_NOT_EXIST).
    Like MLflow, it refuses to change a param a run has (`error_code` INVALID_PARAMETER_VALUE), and a `log_batch`
    over MLflow's limits (100 params, 100 tags, 1000 metrics, 1000 in all: `mlflow.utils.validation`)."""

    def __init__(self):
        self.runs, self.experiments = {}, {}
        self.metrics, self.batches, self.artifacts, self.calls = [], [], [], []
        self.uploaded_from, self.searches = [], 0
        self.down, self.fail_on = False, None

    # experiments and runs
    def get_experiment_by_name(self, name):
        if name not in self.experiments:
            return None
        return SimpleNamespace(experiment_id=self.experiments[name], lifecycle_stage="active")

    def create_experiment(self, name, artifact_location=None):
        self.experiments[name] = str(len(self.experiments) + 1)
        return self.experiments[name]

    def create_run(self, exp_id, run_name=None, tags=None, start_time=None):
        run_id = f"run{len(self.runs) + 1}"
        self.runs[run_id] = SimpleNamespace(
            info=SimpleNamespace(run_id=run_id, status="RUNNING", lifecycle_stage="active", end_time=None,
                                 experiment_id=exp_id, run_name=run_name, start_time=start_time),
            data=SimpleNamespace(tags=dict(tags or {}), params={}, metrics={}))
        return self.runs[run_id]

    def get_run(self, run_id):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

        if self.fail_on == "get_run":  # the server answers, with an error of its own (not "no such run")
            raise MlflowException("API request failed with error code 503", error_code=TEMPORARILY_UNAVAILABLE)
        if run_id not in self.runs:  # what MLflow says of a run it does not have
            raise MlflowException(f"Run '{run_id}' not found", error_code=RESOURCE_DOES_NOT_EXIST)
        return self.runs[run_id]

    def search_runs(self, exp_ids, filter_string="", max_results=1000, page_token=None):
        """Only the filters the code uses: tags.`KEY` = 'VALUE', several joined by ` and `. Pages as MLflow's do
        (1000 runs by default; the page's `token` names the next one, None on the last). Counted in `searches`."""
        self.searches += 1
        wanted = [term.split("tags.`")[-1].split("` = '") for term in filter_string.split(" and ")]
        found = [r for r in self.runs.values() if r.info.experiment_id in exp_ids
                 and all(r.data.tags.get(key) == want.rstrip("'") for key, want in wanted)]
        start = int(page_token or 0)
        page = PagedRuns(found[start:start + max_results])
        page.token = str(start + max_results) if start + max_results < len(found) else None
        return page

    # logging
    def _call(self, kind, run_id):
        if self.fail_on in (kind, "all"):
            raise ConnectionError(f"lost the server during {kind}")
        self.calls.append((kind, run_id))

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self._call("metrics" if metrics else "params" if params else "tags", run_id)
        from mlflow.utils.validation import _validate_batch_log_limits

        _validate_batch_log_limits(list(metrics), list(params), list(tags))  # what a real store refuses
        data = self.runs[run_id].data
        if any(p.key in data.params and data.params[p.key] != p.value for p in params):
            err = RuntimeError("changing a param")
            err.error_code = "INVALID_PARAMETER_VALUE"
            raise err
        data.params.update({p.key: p.value for p in params})
        data.tags.update({t.key: t.value for t in tags})
        self.metrics.extend((run_id, m.key, m.step, m.value) for m in metrics)
        if metrics:
            self.batches.append(len(metrics))

    def set_tag(self, run_id, key, value):
        self._call("set_tag", run_id)
        self.runs[run_id].data.tags[key] = value

    def delete_tag(self, run_id, key):
        self._call("delete_tag", run_id)
        del self.runs[run_id].data.tags[key]

    def update_run(self, run_id, status):
        self._call("resume", run_id)
        self.runs[run_id].info.status = status

    def set_terminated(self, run_id, status, end_time=None):
        self._call("close", run_id)
        self.runs[run_id].info.status, self.runs[run_id].info.end_time = status, end_time

    def log_artifact(self, run_id, path, artifact_path=None):
        self._call("artifact", run_id)
        self.artifacts.append((run_id, Path(path).name, artifact_path))
        self.uploaded_from.append(Path(path))

    def log_inputs(self, run_id, datasets=None):
        self._call("inputs", run_id)


class PagedRuns(list):
    """One page of a search (MLflow's `PagedList`): the runs, and `token` for the next page."""
    token = None


class FakeServers(dict):
    """{tracking URI: its `FakeStore`}; a URI's store is made the first time it is asked for."""

    def __missing__(self, uri):
        self[uri] = FakeStore()
        return self[uri]


def install(monkeypatch) -> FakeServers:
    """Make every `mlflow.MlflowClient(uri)` the fake store of `uri`, reachable until its `down` is set."""
    servers = FakeServers()

    def client(tracking_uri=None, *_, **__):
        return servers[tracking_uri]

    def reachable(uri, *_, **__):
        return not servers[uri].down
    monkeypatch.setattr(mlflow, "MlflowClient", client)
    for module in (server, mlflow_logger, runs):
        monkeypatch.setattr(module, "server_reachable", reachable)
    return servers


def train_logger(run_dir: Path, uri: str = URI, resume: bool = False, **tracking) -> mlflow_logger.MLflowLogger:
    """The train stage's MLflow logger of the run in `run_dir` (experiment `r-train`, artifacts beside the run)."""
    return mlflow_logger.MLflowLogger(TrackingConfig(**tracking), uri, run_dir.parent / "mlartifacts", "r-train",
                                      run_dir=run_dir, stage="train", resume=resume)

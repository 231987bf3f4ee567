"""Parent and child runs: a search (or any group of runs) as one MLflow parent run with its trials nested under
it through the `mlflow.parentRunId` tag (never `MLFLOW_RUN_ID`, which would override the parent: MLflow #15713).

    parent = ParentRun.open(tracking, uri, output_dir, name="search-1", tags=..., params=..., resume_id=None)
    ... each trial: tracking.parent_run_id = parent.run_id ...
    parent.finish(metrics={...}, artifacts=[...], tags={...}, step=n)   # each part on its own
    parent.child_with_tag("run_dir", "/abs/path")   # the trial's own run
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..sections import TrackingConfig
from .events import log_metrics, log_tags
from .metric_name import mlflow_names
from .params import TAG_VALUE_LIMIT, param_values
from .server import get_or_create_experiment, limit_http_retries, open_client, server_reachable

log = logging.getLogger(__name__)


@dataclass
class ParentRun:
    """An MLflow run that groups child runs; every call survives a lost server (it warns and carries on)."""

    uri: str
    run_id: str

    @classmethod
    def open(cls, tracking: TrackingConfig, uri: str, output_dir: Path, name: str, *,
             tags: Optional[Mapping[str, str]] = None, params: Optional[Mapping[str, Any]] = None,
             artifacts: Sequence[Path] = (), resume_id: Optional[str] = None) -> Optional["ParentRun"]:
        """Reuse `resume_id` when that run still exists (a resumed search), else create one; None when the
        tracking server cannot be reached (the children then log without a parent)."""
        from mlflow.entities import Param

        limit_http_retries(tracking)
        if not server_reachable(uri, tracking.request_timeout_s):
            log.warning("tracking server %s unreachable; no MLflow parent run for %s", uri, name)
            return None
        client = open_client(uri)
        if resume_id:
            try:
                client.get_run(resume_id)
                client.update_run(resume_id, status="RUNNING")
                return cls(uri, resume_id)
            except Exception as err:  # noqa: BLE001 - only "no such run" (a fresh store) makes a new one
                if getattr(err, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                    # a server error says nothing about the run: a new parent split the search's trials in two
                    log.warning("could not reopen parent run %s of %s at %s (%s); its trials still nest under it",
                                resume_id, name, uri, str(err)[:200])
                    return cls(uri, resume_id)
        exp_id = get_or_create_experiment(client, tracking.experiment, Path(output_dir) / "mlartifacts")
        run = client.create_run(exp_id, run_name=name, tags=dict(tags or {}))
        run_id = run.info.run_id
        items = [Param(k, v) for k, v in param_values(params or {}).items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i:i + 100])
        for path in artifacts:
            client.log_artifact(run_id, str(path), "search")
        return cls(uri, run_id)

    def finish(self, *, metrics: Mapping[str, float] = (), artifacts: Sequence[Path] = (),
               tags: Mapping[str, str] = (), status: str = "FINISHED", step: int = 0) -> None:
        """Log the group's summary (`metrics` at `step`, each name one MLflow takes, as the runs' loggers log them:
        `mlflow_key`; a tag given as None is removed) and close the run as `status`.

        Each part goes on its own: MLflow rejects a whole batch for one param logged before with another value (a
        resumed search), and that rejection used to skip the artifacts and the run's end, leaving it RUNNING with
        stale artifacts. Values that change between calls belong in tags and metrics, which MLflow updates."""
        import mlflow
        from mlflow.entities import Metric

        if not server_reachable(self.uri):
            log.warning("tracking server %s unreachable: the summary of parent run %s stays on disk only", self.uri,
                        self.run_id)
            return
        client = mlflow.MlflowClient(self.uri)
        now = int(time.time() * 1000)
        metrics = dict(metrics)
        # In requests within MLflow's log_batch limits (a larger one is refused whole: a big search's summary).
        # Two names of one MLflow key are refused naming both (warned below): a dict of keys dropped one silently.
        parts = [("metrics", lambda: log_metrics(client, self.run_id, [
                     Metric(k, float(metrics[name]), now, step) for k, name in mlflow_names(metrics).items()])),
                 ("tags", lambda: log_tags(client, self.run_id, {
                     k: str(v)[:TAG_VALUE_LIMIT] for k, v in dict(tags).items() if v is not None})),
                 *((f"tag {k} (stale)", lambda k=k: client.delete_tag(self.run_id, k))
                   for k, v in dict(tags).items() if v is None and k in self._tags(client)),
                 *((f"artifact {path}", lambda path=path: client.log_artifact(self.run_id, str(path), "search"))
                   for path in artifacts),
                 ("end", lambda: client.set_terminated(self.run_id, status=status))]
        for what, call in parts:
            try:
                call()
            except Exception as err:  # noqa: BLE001 - results are on disk either way; the other parts still go
                log.warning("could not log the %s of parent run %s to MLflow: %s", what, self.run_id, err)

    def _tags(self, client) -> Mapping[str, str]:
        try:
            return client.get_run(self.run_id).data.tags
        except Exception:  # noqa: BLE001 - nothing to remove then
            return {}

    def child_with_tag(self, key: str, value: str) -> Optional[str]:
        """The run id of the child run whose tag `key` equals `value` (None when there is none)."""
        import mlflow

        client = mlflow.MlflowClient(self.uri)
        experiment, token = client.get_run(self.run_id).info.experiment_id, None
        children = f"tags.`mlflow.parentRunId` = '{self.run_id}'"
        # The server filters on the tag too (one request; reading every child took one per 1000 trials). A quote
        # in the value cannot be written in MLflow's filter syntax: those are matched here, page by page.
        server_side = "'" not in value and "`" not in key
        query = f"{children} and tags.`{key}` = '{value}'" if server_side else children
        while True:  # every page: a search returns 1000 runs at most, and a search may have more trials
            page = client.search_runs([experiment], filter_string=query, max_results=1000, page_token=token)
            match = [r for r in page if r.data.tags.get(key) == value]
            if match:
                return match[0].info.run_id
            token = page.token
            if not token:
                return None

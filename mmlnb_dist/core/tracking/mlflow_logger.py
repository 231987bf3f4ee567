"""The MLflow backend of the metric logger: params, metrics, artifacts, figures and dataset inputs.

The backend never stops a run: every call is first appended to the stage's journal (`journal.Spool`,
`<run_dir>/tracking/<stage>.jsonl`), then sent. When the tracking server cannot be reached (at start or mid-run)
the logger warns once, stops sending and keeps journaling; a resumed process (`run.resume=true`) reopens the same
MLflow run (its id is in `<run_dir>/tracking/<stage>.json`) and first sends what earlier processes could not,
and `mmlnb-dist tracking sync RUNS_FOLDER` uploads every journal left with unsent events (`journal.sync_run_dir`).
"""
from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from ..files import replace_text
from ..sections import TrackingConfig
from .events import apply_event
from .journal import Spool, ensure_run, now_ms, recorded_run, relocated, send_pending, upload, write_run_record
from .loggers import NullLogger
from .metric_name import mlflow_key, mlflow_names
from .params import TAG_VALUE_LIMIT, param_values
from .server import (absolute_sqlite_uri, get_or_create_experiment, limit_http_retries, open_client,
                     server_reachable)

log = logging.getLogger(__name__)


class MLflowLogger(NullLogger):
    """Logs to an MLflow run: params, metrics, artifacts, figures, dataset inputs; never raises on a lost server.

    With `run_dir` every call is journaled first (`Spool` of `stage`) and `resume=True` continues the run the
    journal belongs to (a fresh run moves an old journal aside and never reuses its run); without `run_dir`,
    calls go straight to MLflow and a failure is still only warned about once.
    """

    wants_figures = True

    def __init__(self, tracking: TrackingConfig, uri: str, artifact_root: Path, run_name: str,
                 tags: Optional[Mapping[str, str]] = None, run_dir: Optional[Path] = None, *,
                 stage: str = "run", resume: bool = False):
        limit_http_retries(tracking)
        self.tracking = tracking
        self.uri = uri  # the store: what the run folder records and a resume or `tracking sync` compares
        # where the calls go: `tracking.server` (a tune search's own server, gone after it) in front of `uri`
        self.address = tracking.server or uri
        self.run_dir = Path(run_dir) if run_dir is not None else None
        try:  # a store MLflow cannot open is a lost server too: training goes on, journaled
            self.client = open_client(self.address)
        except Exception as err:  # noqa: BLE001
            self.client, client_error = None, f"{type(err).__name__}: {str(err)[:200]}"
        self.run_id: Optional[str] = None
        self.online = True
        self.closed = False
        self._warned = False
        self._monitor = None
        # (metric key, step) pairs after the resumed checkpoint that the killed process logged (`resumed_at`)
        self._replayed: Set[Tuple[str, int]] = set()
        self._resume_count = 0  # this run's resumes, this one included (`_continue_recorded_run`)
        self._named: Dict[str, str] = {}  # MLflow key -> the metric name logged under it (`log_metrics`)
        tags = dict(tags or {})
        if tracking.parent_run_id:
            tags["mlflow.parentRunId"] = tracking.parent_run_id
        if resume and self.run_dir is not None:
            self._warn_other_store(stage, uri)
        self.spool = self._open_journal(stage, resume) if self.run_dir is not None else None
        if self.spool is not None:
            if self.spool.count == 0:
                self.spool.state_path.unlink(missing_ok=True)  # a new journal is a new run: no stale run id
                self._record({"op": "start", "run_name": run_name, "experiment": tracking.experiment,
                              "artifact_root": str(Path(artifact_root).resolve()), "tags": tags})
            else:  # resume: the earlier process may have died without a word; say so, then continue its run
                self._fork_if_copied(stage, run_name, tags)
                if self.spool.close_killed_segment():
                    log.info("the previous process of this run was killed; its MLflow run is marked KILLED and "
                             "continued")
                resumes = sum(1 for e in self.spool.events() if e["op"] == "resume")
                self._record({"op": "resume", "resume_count": resumes + 1})
            if not self.spool.state().get("run_id"):
                self.spool.write_state(tracking_uri=uri, experiment=tracking.experiment, run_name=run_name)
        if self.client is None:
            self._go_offline(f"could not open the MLflow store {self.address} ({client_error})")
            return
        if not server_reachable(self.address, tracking.request_timeout_s):
            self._go_offline(f"tracking server {self.address} is not reachable")
            return
        try:
            if self.spool is not None:
                # The run this journal belongs to (created on first contact), then the backlog earlier
                # processes could not send, then this process's start/resume event: all in journal order.
                self.run_id, _ = ensure_run(self.client, self.spool, uri)
                send_pending(self.client, self.run_id, self.spool)
            else:
                self.run_id = self._continue_recorded_run(stage, uri) if resume and self.run_dir else None
                if self.run_id is None:
                    exp_id = get_or_create_experiment(self.client, tracking.experiment, Path(artifact_root))
                    self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
                if self.run_dir is not None:  # no journal, but the folder still names its run (register, pipeline)
                    self._record_run_without_journal(stage, uri, run_name)
        except Exception as err:  # noqa: BLE001 - any tracking failure must leave training running
            self._go_offline(f"could not open the MLflow run at {uri}: {type(err).__name__}: {str(err)[:200]}")
            return
        if tracking.system_metrics:
            self._start_system_metrics()

    def _warn_other_store(self, stage: str, uri: str) -> None:
        """A resume logging to another store than its run's (tracking.uri changed, or the default store moved with
        run.output_dir) leaves the run in two stores: said, naming both, before anything is sent."""
        record = recorded_run(self.run_dir, stage)
        old = record.get("tracking_uri")
        if not (record.get("run_id") and old) or absolute_sqlite_uri(old) == absolute_sqlite_uri(uri):
            return
        gets = ("what it lacks of the run, replayed from the journal (the whole run, in a new run, when it has none "
                "of it)" if self.tracking.spool else
                "a new run holding only what this process logs (tracking.spool is off: nothing replays the rest)")
        log.warning("this resume logs to another MLflow store than its run did: run %s of %s was logged to %s, and "
                    "the store is now %s, which gets %s; run %s at %s is left as it is (a killed process's run stays "
                    "RUNNING). To keep the run in one store, resume with tracking.uri=%s", record["run_id"],
                    self.run_dir, old, uri, gets, record["run_id"], old, old)

    def _continue_recorded_run(self, stage: str, uri: str) -> Optional[str]:
        """Without a journal, a resumed process continues the MLflow run its folder records (RUNNING again, its
        `resume_count` tag counted up), as a journaled resume does; None when the record names no run on `uri`."""
        record = recorded_run(self.run_dir, stage)
        if not record.get("run_id") or absolute_sqlite_uri(record.get("tracking_uri") or "") != uri:
            return None
        try:
            run = self.client.get_run(record["run_id"])
        except Exception as err:  # noqa: BLE001 - the run is gone (e.g. a fresh store): a new run it is
            if getattr(err, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                # a server error says nothing about the run: a new one split the run's history in two
                log.warning("could not read run %s recorded in %s (%s); continuing it", record["run_id"],
                            self.run_dir, str(err)[:200])
                # counted on from the folder's record (the tag cannot be read): left as it was, it fell behind
                if record.get("resume_count") is None:
                    self.client.update_run(record["run_id"], status="RUNNING")  # a record from before the count
                else:
                    self._resume_count = int(record["resume_count"]) + 1
                    apply_event(self.client, record["run_id"], {"op": "resume", "resume_count": self._resume_count})
                return record["run_id"]
            log.warning("run %s recorded in %s is not at %s any more; logging to a new run", record["run_id"],
                        self.run_dir, uri)
            return None
        if run.info.lifecycle_stage != "active":
            return None
        if self._copy_of(stage, run.info.run_id, run.data.tags.get("run_dir")):
            log.info("%s is a copy of run folder %s: logging to a new MLflow run, not to its run %s", self.run_dir,
                     run.data.tags.get("run_dir"), run.info.run_id)
            return None
        # the folder's record holds the count too: a resume that could not read the tag counted on from it
        self._resume_count = max(int(run.data.tags.get("resume_count", 0)), int(record.get("resume_count", 0))) + 1
        apply_event(self.client, run.info.run_id,  # what a journaled resume sends
                    {"op": "resume", "resume_count": self._resume_count})
        return run.info.run_id

    def _copy_of(self, stage: str, run_id: Optional[str], origin: Optional[str]) -> Optional[Path]:
        """The run folder this one was copied from (`cp -r runs/a runs/a2` to branch a run), when the run it records
        (`run_id`) was logged from another folder (`origin`, its `run_dir`) that still records that run; None for
        the run's own folder, or one moved (the old folder gone, or recording another run since)."""
        if not (run_id and origin) or Path(origin) == self.run_dir.resolve():
            return None
        return Path(origin) if recorded_run(Path(origin), stage).get("run_id") == run_id else None

    def _fork_if_copied(self, stage: str, run_name: str, tags: Mapping[str, str]) -> None:
        """A copied folder's journal names the original's MLflow run, and resumed, the copy logged its own steps
        into it (the original's run then read as the branch's). It becomes the journal of a new run instead: the
        copied history under a new start event (this folder's name and tags), sent whole to a run of its own."""
        events = list(self.spool.events())
        start = next((e for e in events if e["op"] == "start"), None)
        origin = self._copy_of(stage, self.spool.state().get("run_id"),
                               ((start or {}).get("tags") or {}).get("run_dir"))
        if start is None or origin is None:
            return
        log.info("%s is a copy of run folder %s: its MLflow history goes to a new run, not to run %s", self.run_dir,
                 origin, self.spool.state().get("run_id"))
        start = {**start, "run_name": run_name, "tags": {**(start.get("tags") or {}), **tags}, "ts": now_ms()}
        # the start now names this folder, so the copied artifact events are made to name this folder's files
        events = [relocated(e, origin, self.run_dir.resolve()) for e in events if e["op"] != "start"]
        replace_text(self.spool.path, "".join(json.dumps(e) + "\n" for e in [start, *events]))
        self.spool.state_path.unlink(missing_ok=True)  # no run yet: `ensure_run` makes it and sends everything
        self.spool.count = len(events) + 1

    def _record_run_without_journal(self, stage: str, uri: str, run_name: str) -> None:
        """Write the run record (`journal.run_record_path`) of a run logged without a journal. A journal an
        earlier process left is moved aside first: the record beside it would otherwise name another run."""
        spool = Spool.for_stage(self.run_dir, stage)
        if spool.path.is_file():
            log.info("tracking.spool is off: the previous MLflow journal of %s moved to %s", stage,
                     spool.archive().name)
        spool.state_path.unlink(missing_ok=True)
        write_run_record(spool.state_path, run_id=self.run_id, tracking_uri=uri,
                         experiment=self.tracking.experiment, run_name=run_name, resume_count=self._resume_count)

    def _open_journal(self, stage: str, resume: bool) -> Optional[Spool]:
        if not self.tracking.spool:
            return None
        spool = Spool.for_stage(self.run_dir, stage)
        locked = spool.lock()
        if not locked:
            log.warning("another process is writing %s (the same run folder twice?); journaling anyway",
                        spool.path)
        if spool.count and not resume:
            # the earlier process died without closing (killed before its first checkpoint, so this run starts
            # fresh): its MLflow run would stay RUNNING for good; journal and send its end as KILLED
            killed = locked and spool.close_killed_segment()
            moved = spool.archive()  # a fresh run never continues an old run; its journal stays syncable
            log.info("fresh run: the previous MLflow journal of %s moved to %s", stage, moved.name)
            if killed:
                self._end_killed_run(moved)
        return spool

    def _end_killed_run(self, journal: Path) -> None:
        try:
            upload(Spool(journal))
        except Exception as err:  # noqa: BLE001 - tracking must never stop the run; sync can do it later
            log.warning("could not mark the killed earlier run of %s as KILLED (%s: %s); `mmlnb-dist tracking sync "
                        "%s` sends it", journal, type(err).__name__, str(err)[:200], self.run_dir)

    # -- plumbing
    def _go_offline(self, reason: str) -> None:
        self.online = False
        if not self._warned:
            self._warned = True
            where = f"; metrics are kept in {self.spool.path} - upload them later with " \
                    f"`mmlnb-dist tracking sync {shlex.quote(str(self.run_dir))}` (a resumed run sends them itself)" \
                if self.spool else ""
            log.warning("MLflow tracking disabled for this run: %s%s", reason, where)

    def _record(self, event: Dict[str, Any]) -> None:
        if self.spool:
            self.spool.append(event)

    def _emit(self, event: Dict[str, Any]) -> None:
        self._record(event)
        if not (self.online and self.run_id):
            return
        try:
            # While online every earlier event is acknowledged, so the new one is the only pending one.
            apply_event(self.client, self.run_id, event)
        except Exception as err:  # noqa: BLE001
            self._stop_system_metrics()
            self._go_offline(f"tracking server call failed ({type(err).__name__}: {str(err)[:200]})")
            return
        if self.spool:
            self.spool.write_state(acked=self.spool.count)

    def _start_system_metrics(self) -> None:
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=self.tracking.system_metrics_interval_s,
                                                 tracking_uri=self.address)
            self._monitor.start()
        except Exception as err:  # noqa: BLE001 - psutil missing etc.: training matters more
            log.warning("system metrics not logged: %s", err)
            self._monitor = None

    def _stop_system_metrics(self) -> None:
        if self._monitor is not None:
            try:
                self._monitor.finish()
            except Exception:  # noqa: BLE001
                pass
            self._monitor = None

    # -- the MetricLogger protocol
    def log_params(self, params: Mapping[str, Any], full_values: Optional[str] = None) -> None:
        """`full_values`: where the whole values are, named in the warning about a value cut to MLflow's limit."""
        self._emit({"op": "params", "params": param_values(params, full_values)})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        step = int(step)
        mlflow_names(metrics, self._named)  # two names MLflow takes as one key: refused, naming both
        # Only the keys the killed process logged at this step are dropped, never the whole step: a kill during
        # the epoch-end evaluation leaves that step with `train_epoch/*` but without its `val/*`/`best/*`.
        # (without the journal they are read from MLflow, under the names it took: `mlflow_key`)
        fresh = {k: float(v) for k, v in metrics.items()
                 if (k, step) not in self._replayed and (mlflow_key(k), step) not in self._replayed}
        if fresh:
            self._emit({"op": "metrics", "step": step, "ts": now_ms(), "metrics": fresh})

    def resumed_at(self, step: int) -> None:
        """MLflow cannot delete a metric point, so the (metric, step) pairs from `step` on that the stopped process
        logged keep its values and this process does not log them again: one value per step, as an uninterrupted
        run has (with a bit-identical resume, the same values; `metrics.jsonl` holds this process's). From `step`,
        not after it: a finished run resumed logs its finish's records (`best/val/*`) at its last step again."""
        self._replayed = {(key, logged) for key, logged in self._logged_pairs() if logged >= step}
        if self._replayed:
            steps = sorted({logged for _, logged in self._replayed})
            log.info("MLflow run %s already has metrics at steps %d-%d from the process that was stopped: those "
                     "are not logged again", self.run_id or "(offline)", steps[0], steps[-1])

    def _logged_pairs(self) -> Set[Tuple[str, int]]:
        """The (metric key, step) pairs this run already holds: from the journal, else asked of the server."""
        if self.spool is not None:
            return {(key, int(e["step"])) for e in self.spool.events() if e["op"] == "metrics"
                    for key in e["metrics"]}
        if not (self.online and self.run_id):
            return set()
        try:
            keys = self.client.get_run(self.run_id).data.metrics
            return {(key, m.step) for key in keys for m in self.client.get_metric_history(self.run_id, key)}
        except Exception as err:  # noqa: BLE001 - tracking never stops a run; a replay is then logged twice
            log.warning("could not read the metrics MLflow run %s already has (%s)", self.run_id, err)
            return set()

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        self._emit({"op": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def log_figure(self, figure: Any, name: str) -> None:
        """Save the figure under `<run_dir>/figures/` (kept even offline) and log it as an artifact."""
        base = self.run_dir if self.run_dir is not None else Path.cwd()
        out = base / "figures" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=110, bbox_inches="tight")
        sub = str(Path("figures", name).parent)
        self.log_artifact(out, sub)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._emit({"op": "tags", "tags": {k: str(v)[:TAG_VALUE_LIMIT] for k, v in tags.items()}})

    def log_datasets(self, specs: List[Dict[str, Any]]) -> None:
        """Dataset inputs (see `dataset_specs`): the run's lineage to its exact shards."""
        if specs:
            self._emit({"op": "inputs", "datasets": specs})

    def close(self, status: str = "FINISHED") -> None:
        """End the run with `status` (FINISHED, FAILED or KILLED), journaled like every call."""
        if self.closed:
            return
        self.closed = True
        self._stop_system_metrics()
        self._emit({"op": "close", "status": status, "ts": now_ms()})
        if self.spool is not None:
            self.spool.unlock()

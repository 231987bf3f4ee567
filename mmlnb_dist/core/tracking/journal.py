"""The MLflow journal: every call a run makes is appended to `<run_dir>/mlflow_spool.jsonl` before it is sent,
so a run never depends on the tracking server; `sync_run_dir` replays what was not sent.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from .server import get_or_create_experiment, limit_http_retries, server_reachable

SPOOL_FILE = "mlflow_spool.jsonl"
STATE_FILE = "mlflow_run.json"


class Spool:
    """Append-only journal of MLflow calls plus a small state file (run id, how many events were applied)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / SPOOL_FILE
        self.state_path = self.run_dir / STATE_FILE
        self.count = sum(1 for _ in self.events())

    def events(self) -> Iterator[Dict[str, Any]]:
        if not self.path.is_file():
            return
        with open(self.path) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    # A line cut short by a crash: everything before it is still good.
                    return

    def append(self, event: Dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(event) + "\n")
        self.count += 1

    def state(self) -> Dict[str, Any]:
        if self.state_path.is_file():
            return json.loads(self.state_path.read_text())
        return {}

    def write_state(self, **updates: Any) -> None:
        state = {**self.state(), **updates}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_path)


def sync_run_dir(run_dir: Path, uri: Optional[str] = None, experiment: Optional[str] = None) -> Dict[str, Any]:
    """Upload what a run journaled but could not send. Idempotent: a second call sends nothing.

    Reuses the run recorded in `mlflow_run.json` when it exists at `uri` (default: the recorded URI),
    sending only events after the last applied one; otherwise creates a run and replays the whole journal.
    Returns {"run_id", "sent", "created", "uri"}.
    """
    import mlflow

    from .mlflow_logger import apply_event

    run_dir = Path(run_dir)
    spool = Spool(run_dir)
    if spool.count == 0:
        raise FileNotFoundError(f"no MLflow journal in {run_dir} (expected {run_dir / SPOOL_FILE})")
    events = list(spool.events())
    start = next((e for e in events if e["op"] == "start"), None)
    if start is None:
        raise ValueError(f"{spool.path} has no start event")
    state = spool.state()
    uri = uri or state.get("tracking_uri")
    if not uri:
        raise ValueError("no tracking URI recorded for this run; pass one (--uri)")
    limit_http_retries()
    if not server_reachable(uri):
        raise ConnectionError(f"tracking server {uri} is not reachable")
    client = mlflow.MlflowClient(tracking_uri=uri)
    run_id, applied, created = None, 0, False
    if state.get("run_id") and state.get("tracking_uri") == uri:
        try:
            client.get_run(state["run_id"])
            run_id, applied = state["run_id"], int(state.get("applied", 0))
        except Exception:  # noqa: BLE001 - the run is gone (e.g. a fresh server): make a new one
            run_id = None
    if run_id is None:
        exp_id = get_or_create_experiment(client, experiment or start["experiment"], Path(start["artifact_root"]))
        run = client.create_run(exp_id, run_name=start["run_name"], tags=start.get("tags") or {})
        run_id, applied, created = run.info.run_id, 0, True
        spool.write_state(tracking_uri=uri, experiment=experiment or start["experiment"],
                          run_name=start["run_name"], run_id=run_id, applied=0)
    sent = 0
    for i, event in enumerate(events):
        if i < applied or event["op"] == "start":
            continue
        apply_event(client, run_id, event)
        sent += 1
        spool.write_state(applied=i + 1)
    spool.write_state(applied=len(events))
    return {"run_id": run_id, "sent": sent, "created": created, "uri": uri}

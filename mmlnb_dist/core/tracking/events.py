"""One journal event sent to MLflow (`apply_event`), with the retries and fallbacks its calls need: a dataset
insert raced by another run, a param a resumed run changed. The journal (`journal.py`) decides what is sent and
when; this module only how."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List

from .metric_name import mlflow_metrics
from .params import PARAM_CHANGED, TAG_VALUE_LIMIT

log = logging.getLogger(__name__)

PARAMS_PER_BATCH = TAGS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
"""MLflow's limits for one `log_batch` request (`mlflow.utils.validation`): a request over them is refused whole,
so an event with more goes out in several requests (re-sending one after a failure is harmless: same values)."""


def dataset_inputs(specs: List[Dict[str, Any]]):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for s in specs:
        ds = Dataset(name=s["name"], digest=s["digest"], source_type="local",
                     source=json.dumps({"uri": s["source"]}), profile=json.dumps(s["profile"]))
        inputs.append(DatasetInput(ds, tags=[InputTag("mlflow.data.context", s["context"])]))
    return inputs


DATASET_INSERT_RACE = ("UNIQUE constraint failed: datasets", "duplicate key value", "Duplicate entry")
"""How SQLite, PostgreSQL and MySQL stores refuse a second insert of one dataset (`log_inputs`)."""


def log_inputs(client, run_id: str, inputs, attempts: int = 3) -> None:
    """`log_inputs`, sent again when another run inserted the same dataset at the same moment: MLflow's SQL store
    looks a dataset up, then inserts it, so two runs starting together on one shard set (Tune trials) race, and
    the loser's insert fails on the unique key. By the next try the dataset exists and is only linked."""
    for attempt in range(attempts):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except Exception as err:  # noqa: BLE001 - only the insert race is retried; the rest re-raises
            if attempt == attempts - 1 or not any(text in str(err) for text in DATASET_INSERT_RACE):
                raise
            time.sleep(0.2 * (attempt + 1))


def log_params(client, run_id: str, params: Dict[str, str]) -> None:
    """Params in chunks of `PARAMS_PER_BATCH` (re-sending a chunk after a failure is harmless). MLflow refuses to
    change a param, which a resumed run with an edited config would do: the run keeps the values it started with
    and each changed value becomes a `param_changed.<key>` tag."""
    from mlflow.entities import Param, RunTag

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), PARAMS_PER_BATCH):
        chunk = items[i:i + PARAMS_PER_BATCH]
        try:
            client.log_batch(run_id, params=chunk)
        except Exception as err:  # noqa: BLE001 - only a refused change is handled; the rest re-raises
            if getattr(err, "error_code", None) != "INVALID_PARAMETER_VALUE":
                raise
            logged = client.get_run(run_id).data.params
            new = [p for p in chunk if p.key not in logged]
            changed = [RunTag(PARAM_CHANGED + p.key, p.value[:TAG_VALUE_LIMIT]) for p in chunk
                       if p.key in logged and logged[p.key] != p.value]
            client.log_batch(run_id, params=new, tags=changed)


def log_metrics(client, run_id: str, metrics: List[Any]) -> None:
    """MLflow `Metric`s in requests of at most `METRICS_PER_BATCH`."""
    for i in range(0, len(metrics), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + METRICS_PER_BATCH])


def log_tags(client, run_id: str, tags: Dict[str, str]) -> None:
    """Tags in requests of at most `TAGS_PER_BATCH`."""
    from mlflow.entities import RunTag

    items = [RunTag(k, v) for k, v in tags.items()]
    for i in range(0, len(items), TAGS_PER_BATCH):
        client.log_batch(run_id, tags=items[i:i + TAGS_PER_BATCH])


def apply_event(client, run_id: str, event: Dict[str, Any]) -> None:
    """Send one journal event to MLflow (raises when the server does not accept it)."""
    op = event["op"]
    if op == "params":
        log_params(client, run_id, event["params"])
    elif op == "metrics":
        log_metrics(client, run_id, mlflow_metrics(event))
    elif op == "tags":
        log_tags(client, run_id, event["tags"])
    elif op == "artifact":
        path = Path(event["path"])
        if not path.exists():
            log.warning("artifact %s no longer exists; not uploaded", path)
        elif path.is_dir():
            client.log_artifacts(run_id, str(path), event.get("artifact_path"))
        else:
            client.log_artifact(run_id, str(path), event.get("artifact_path"))
    elif op == "inputs":
        log_inputs(client, run_id, dataset_inputs(event["datasets"]))
    elif op == "close":
        client.set_terminated(run_id, status=event["status"], end_time=event.get("ts"))
    elif op == "resume":
        # The same run continues: RUNNING again, with a count of how often it was resumed.
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "resume_count", str(event.get("resume_count", 1)))
    elif op != "start":
        raise ValueError(f"unknown journal event {op!r}")

"""Which model wrote a predictions file: `<out name>.model.json` beside it (the URI as given; for a registered
model the name and version it resolved to; the run id and model uuid of the MLmodel; for a local folder its path
and the MLmodel's sha256). Nothing recorded it: a rerun into the same `--out` after the registry alias moved to
another version overwrote the old model's predictions without a word, and the file did not say whose they were.
A rerun with another model redoes the whole job (`predict` never reuses a finished output's rows) and warns,
naming the model that wrote the file and the one writing it now."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional

from ..core.files import replace_text
from .model import local_folder, registered_version

log = logging.getLogger(__package__)  # "[predict]" on the console

IDENTITY = ("name", "version", "run_id", "model_id", "model_uuid", "path", "mlmodel_sha256")
"""What tells two models apart (the URI does not: an alias moves, and two URIs can name one version); a part one
record lacks (a version looked up in no store) is not compared."""


def model_record_file(out: Path) -> Path:
    """Where `predict --out preds.csv` records its model: `preds.csv.model.json`. The whole name, suffix included:
    `preds.csv` and `preds.jsonl` (two outputs, two jobs, maybe two models) each keep their own record; under the
    stem alone the second job's record replaced the first's, which then named a model that never wrote it."""
    return Path(out).with_name(f"{Path(out).name}.model.json")


def model_identity(model_uri: str, model: Any, tracking_uri: Optional[str] = None) -> Dict[str, Any]:
    """What `predict` records of the model it loaded from `model_uri` (see the module's docstring)."""
    meta = getattr(model, "metadata", None)
    record: Dict[str, Any] = {"uri": model_uri, "model_uuid": getattr(meta, "model_uuid", None),
                              "run_id": getattr(meta, "run_id", None), "model_id": getattr(meta, "model_id", None)}
    if model_uri.startswith("models:/"):
        record["name"], record["version"] = registered_version(model_uri, tracking_uri)
    folder = local_folder(model_uri)
    if folder is not None and (folder / "MLmodel").is_file():
        record["path"] = str(folder.resolve())
        record["mlmodel_sha256"] = hashlib.sha256((folder / "MLmodel").read_bytes()).hexdigest()
    return record


def describe(record: Dict[str, Any]) -> str:
    named = f"{record['name']} version {record['version']}" if record.get("name") else record.get("uri")
    parts = [f"{k} {record[k]}" for k in ("run_id", "model_uuid", "mlmodel_sha256") if record.get(k)]
    return f"{named} ({', '.join(parts)})" if parts else str(named)


def warn_if_other_model(out: Path, record: Dict[str, Any]) -> None:
    """A warning when `out` exists and its record names another model than `record` (its rows are then all
    predicted again by this one)."""
    path = model_record_file(out)
    if not Path(out).is_file() or not path.is_file():
        return
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(earlier, dict):
        return
    both = [k for k in IDENTITY if earlier.get(k) is not None and record.get(k) is not None]
    if all(earlier[k] == record[k] for k in both) and (both or earlier.get("uri") == record.get("uri")):
        return
    log.warning("%s was written by another model, %s; predicting every input again with %s (no row of the "
                "earlier model is kept)", out, describe(earlier), describe(record))


def write_model_record(out: Path, record: Dict[str, Any]) -> Path:
    path = model_record_file(out)
    replace_text(path, json.dumps(record, indent=2, default=str) + "\n")
    return path

"""A run trained without MLflow, as an MLflow run: `mmlnb-dist tracking import RUN_FOLDER`.

A run whose `tracking.backends` had no mlflow (a cluster without a tracking server, a first try) keeps its
settings in `<run_dir>/config.yaml` and every metric record, step by step, in `<run_dir>/metrics.jsonl` (the
stdout backend). Importing writes the journal the MLflow logger would have written
(`<run_dir>/tracking/<stage>.jsonl`: start, params, the config as an artifact, the dataset inputs the run's logger
recorded in `<run_dir>/datasets.json`, each metric record at its step, the export digest `export.json` records
(tagged as the backend tags it), close: FINISHED, or KILLED when the run
never wrote its final `metrics.json`) and uploads it (`journal.upload`).
From then on the folder is a tracked run like any other: `register --run FOLDER` and the pipeline's register
stage find its run, `tracking sync` sends what a lost server missed, and a resume with mlflow continues the same
MLflow run.
"""
from __future__ import annotations

import difflib
import json
import logging
import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from pydantic import ValidationError

from ..config import flatten_dict
from ..errors import UserError
from ..runlock import FolderLock
from ..sections import TrackingConfig
from .journal import Spool, recorded_run, run_record_path, upload
from .lineage import DATASETS_RECORD, other_stage, recorded_datasets
from .params import param_values
from .server import absolute_sqlite_uri, default_tracking_uri, sqlite_store
from .versions import EXPORT_TAG, recorded_export

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
"""Where the stdout backend keeps a run's metric records (`loggers.StdoutLogger`)."""
CONFIG_FILE = "config.yaml"
STAGES = ("train", "evaluate", "finetune-vlm", "describe", "smoke", "slides")
"""The stages the recipes and commands log under (`build_logger(..., stage)`); `--stage` is one of them."""
FINISHED_FILE = "metrics.json"
"""What a recipe writes when its training ends (the final metrics): without it the run is imported as KILLED."""


class FolderImportError(UserError):
    """The folder cannot be imported: not a finished run folder, already tracked, or no metrics kept."""


def _metric_records(path: Path) -> List[Dict[str, Any]]:
    """The records of `path`; a last line a killed run left cut short (no newline) is left out, with a warning."""
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record.pop("step"))
            records.append({"step": step, "metrics": {k: float(v) for k, v in record.items()}})
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            if n == len(lines) and not text.endswith("\n"):
                log.warning("%s:%d: the last record was cut short (the run was killed writing it): left out", path, n)
                continue
            raise FolderImportError(f"{path}:{n}: not a metric record ({type(err).__name__}: {err})") from None
    return records


def _training_folder(run_dir: Path, output_dir: str) -> Optional[Path]:
    """The folder training ran in: the run folder sits in `<there>/<run.output_dir>`, so a relative `output_dir`
    (as saved) is stripped from the end of the run folder's parent. None when that cannot be known (an absolute
    or `..` output_dir, or a folder moved since)."""
    out = [part for part in Path(output_dir).parts if part != "."]
    parent = run_dir.resolve().parent
    if Path(output_dir).is_absolute() or ".." in out or (out and list(parent.parts[-len(out):]) != out):
        return None
    return Path(*parent.parts[:len(parent.parts) - len(out)])


def _saved_store(tracking: TrackingConfig, config: Dict[str, Any], run_dir: Path, config_path: Path) -> str:
    """The store training would have used: the default one beside the run folder, or the saved `tracking.uri`,
    whose relative SQLite path training read from the folder it ran in (read from where the import runs, it
    named another file: a new, empty store)."""
    relative = tracking.uri and sqlite_store(tracking.uri)  # the validator stored the scheme in lower case
    if not relative or relative.is_absolute() or str(relative) == ":memory:":
        return default_tracking_uri(tracking, run_dir.resolve().parent)
    trained_in = _training_folder(run_dir, str((config.get("run") or {}).get("output_dir") or "runs"))
    if trained_in is None:
        trained_in = Path.cwd().resolve()
        log.warning("%s: tracking.uri %s is relative to the folder training ran in, which the run folder no longer "
                    "tells (run.output_dir is absolute or the folder was moved): read from %s, the folder this "
                    "command runs in; pass --uri to import into another store", config_path, tracking.uri,
                    trained_in)
    _, query, options = tracking.uri.partition("?")
    return absolute_sqlite_uri(f"sqlite:///{trained_in / sqlite_store(tracking.uri)}{query}{options}")


def import_run_folder(run_dir: Path, stage: str = "train", uri: Optional[str] = None) -> Dict[str, Any]:
    """Make the MLflow run of finished run folder `run_dir`'s `stage` from what the folder kept, and record it
    there. `uri`: the tracking store (default: the run's `tracking.uri`, else the SQLite store beside the run
    folder, as training would have used). Returns `journal.upload`'s result ({"run_id", "sent", "uri", ...})."""
    run_dir = Path(run_dir)
    if not stage or stage in (".", "..") or any(c in stage for c in "/\\"):  # its journal would sit elsewhere
        raise FolderImportError(f"--stage {stage!r}: a stage is a plain name (train, evaluate, ...), not a path")
    if stage not in STAGES:  # a typo made a run under a stage nothing reads (`register --run` found none)
        close = difflib.get_close_matches(stage, STAGES, n=1)
        raise FolderImportError(f"--stage {stage!r} is not a stage a run logs under"
                                + (f"; did you mean {close[0]!r}?" if close else "")
                                + f" (stages: {', '.join(STAGES)})")
    config_path, metrics_path = run_dir / CONFIG_FILE, run_dir / METRICS_FILE
    if not config_path.is_file():
        raise FolderImportError(f"{run_dir} is not a run folder: no {CONFIG_FILE} (a run folder is what `train` "
                                f"prints as run_dir)")
    other = other_stage(run_dir, stage)
    if other:  # its metrics.jsonl are another stage's
        raise FolderImportError(f"{run_dir} is the folder of a {other[0]} run (its records name {other[0]}, not "
                                f"{stage}): its metrics are not a {stage} run's. Import it as what it is (`mmlnb-dist "
                                f"tracking import {shlex.quote(str(run_dir))} --stage {other[0]}`) or give the "
                                f"{stage} run's own folder")
    FolderLock(run_dir, "tracking import").refuse_if_held()  # a live run still writes its metrics
    journal = run_record_path(run_dir, stage).with_suffix(".jsonl")
    record = recorded_run(run_dir, stage)
    if record.get("run_id") or journal.is_file():
        raise FolderImportError(
            f"{run_dir} already has an MLflow run for its {stage} stage ({record.get('run_id') or journal}): "
            f"nothing to import (`mmlnb-dist tracking sync {shlex.quote(str(run_dir))}` sends what its server has "
            f"not received)")
    if not metrics_path.is_file():
        raise FolderImportError(f"{run_dir} kept no metrics ({METRICS_FILE} is missing: tracking.backends had "
                                f"neither mlflow nor stdout), so there is no run to import")
    config = yaml.safe_load(config_path.read_text()) or {}
    # only what the import reads: the saved store is not checked when --uri replaces it (a folder copied from a
    # cluster names a path that may not exist here), and a setting refused since is no traceback
    saved = {k: v for k, v in (config.get("tracking") or {}).items()
             if k in ("experiment", "log_dataset") or (k == "uri" and not uri)}
    try:
        tracking = TrackingConfig(**saved)
    except ValidationError as err:  # the saved tracking.uri cannot be used here
        why = "; ".join(f"tracking.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise FolderImportError(f"{config_path}: its tracking section cannot be used here ({why}); pass the store "
                                f"to import into: --uri URI") from None
    # a relative SQLite store made absolute: recorded as written, it meant another file from every other folder
    uri = absolute_sqlite_uri(uri) if uri else _saved_store(tracking, config, run_dir, config_path)
    run_name = f"{(config.get('run') or {}).get('name') or run_dir.name}-{stage}"
    datasets = recorded_datasets(run_dir, stage)
    if datasets is None and tracking.log_dataset:
        log.warning("%s recorded no shard sets (%s: trained before they were recorded): imported without dataset "
                    "inputs, so `register` will not compare its score with another version's", run_dir,
                    DATASETS_RECORD)
    params = param_values({k: v for k, v in flatten_dict(config).items() if k != "run.resume"},
                          f"{config_path} (the run's config.yaml artifact)")
    started, ended = int(config_path.stat().st_mtime * 1000), int(metrics_path.stat().st_mtime * 1000)
    events = [
        {"op": "start", "run_name": run_name, "experiment": tracking.experiment, "ts": started,
         "artifact_root": str((run_dir.resolve().parent / "mlartifacts")),
         "tags": {"stage": stage, "run_dir": str(run_dir.resolve()), "imported_from": METRICS_FILE}},
        {"op": "params", "params": params, "ts": started},
        {"op": "artifact", "path": str(config_path.resolve()), "artifact_path": None, "ts": started},
        # the shard sets the run read, as its logger recorded them: the registry compares scores only on one set
        *([{"op": "inputs", "datasets": datasets, "ts": started}] if datasets and tracking.log_dataset else []),
        *({"op": "metrics", "step": r["step"], "metrics": r["metrics"], "ts": ended}
          for r in _metric_records(metrics_path)),
        # the export these metrics describe, tagged as the MLflow backend tags it at export: without the tag,
        # `register` read the digest from export.json, which a later resume without mlflow rewrites, and
        # registered that resume's weights under this run's metrics
        *([{"op": "tags", "tags": {EXPORT_TAG: exported}, "ts": ended}]
          if (exported := recorded_export(run_dir).get(EXPORT_TAG)) else []),
        # a run that never wrote its final metrics stopped before its end (a resume continues it)
        {"op": "close", "status": "FINISHED" if (run_dir / FINISHED_FILE).is_file() else "KILLED", "ts": ended},
    ]
    spool = Spool(journal)  # only now: a refused import leaves the folder as it was
    for event in events:
        spool.append(event)
    spool.write_state(tracking_uri=uri, experiment=tracking.experiment, run_name=run_name)
    try:
        result = upload(spool)
    except ConnectionError as err:
        raise FolderImportError(f"{err}; the run's journal is written ({spool.path}): `mmlnb-dist tracking sync "
                                f"{shlex.quote(str(run_dir))}` uploads it when the server is up") from None
    except Exception as err:  # noqa: BLE001 - a store that cannot be opened or refuses: named, not a traceback
        raise FolderImportError(f"could not upload to {uri} ({type(err).__name__}: {str(err)[:300]}); the run's "
                                f"journal is written ({spool.path}): `mmlnb-dist tracking sync "
                                f"{shlex.quote(str(run_dir))} --uri URI` uploads it to a store that works") from None
    log.info("imported %s as MLflow run %s (%d metric records, %d dataset inputs) at %s", run_dir, result["run_id"],
             sum(e["op"] == "metrics" for e in events), len(datasets or ()), uri)
    return result

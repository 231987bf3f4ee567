"""An imported run carries the digest of the export its training wrote (`export.artifacts_sha256`), as the MLflow
backend tags it at export. Without it, a folder resumed with the stdout backend after its import (more epochs, a new
export) registered the new weights under the imported run's older metrics, lineage and model card: `register` read
the digest from the folder's `export.json`, which the resumed run had rewritten."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.tracking.loggers import NullLogger
from mmlnb_dist.core.tracking.folder_import import import_run_folder
from mmlnb_dist.core.tracking.versions import EXPORT_TAG, check_export_unchanged, record_export


def _export(run_dir, weights: str):
    export = run_dir / "export"
    export.mkdir(exist_ok=True)
    (export / "model.safetensors").write_text(weights)
    record_export(NullLogger(), run_dir, export)  # what the stdout-only training does at export
    return export


def test_an_imported_run_refuses_an_export_its_folder_wrote_after_the_import(tmp_path):
    import mlflow

    run_dir = tmp_path / "runs" / "offline"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("run:\n  name: offline\n")
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 2, "val/acc": 0.5}) + "\n")
    (run_dir / "metrics.json").write_text("{}")
    export = _export(run_dir, "weights after 2 epochs")
    digest = json.loads((run_dir / "export.json").read_text())[EXPORT_TAG]

    result = import_run_folder(run_dir)
    run = mlflow.MlflowClient(result["uri"]).get_run(result["run_id"])
    assert run.data.tags.get(EXPORT_TAG) == digest
    check_export_unchanged(run, export, run_dir)  # the export the imported metrics describe

    # resumed without mlflow: more epochs, a new export; the imported run still holds the 2-epoch metrics
    with (run_dir / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"step": 4, "val/acc": 0.9}) + "\n")
    _export(run_dir, "weights after 4 epochs")
    with pytest.raises(UserError, match="changed since the run exported it"):
        check_export_unchanged(run, export, run_dir)

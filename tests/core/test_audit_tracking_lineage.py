"""Mutation-audit guards of what ties a run to its data and its model: the shard sets each stage recorded, whose
export a folder is, the export's file digests, and registering into a model that exists already. Complements
`tests/core/test_audit_registry.py` (the alias rule) with the cases it leaves open."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, RESOURCE_ALREADY_EXISTS

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.tracking.lineage import (DataChangedError, check_resumed_datasets, record_datasets,
                                              recorded_datasets)
from mmlnb_dist.core.tracking.ownership import ExportOwnerError, check_export_owner
from mmlnb_dist.core.tracking.versions import (EXPORT_RECORD, EXPORT_TAG, artifacts_digest, check_export_unchanged,
                                               new_version, record_export)


def _spec(context, manifest, source="/shards"):
    return {"name": "s", "context": context, "source": source, "profile": {"manifest_sha256": manifest}}


def test_recording_one_stage_keeps_the_other_stages_shard_sets(tmp_path):
    """`datasets.json` holds every stage: recording `describe` (or resuming `train`) replaces that stage's entry
    only, so a resume of `train` is still checked against the sets `train` read."""
    record_datasets(tmp_path, "train", [_spec("train", "t1"), _spec("val", "v1")])
    record_datasets(tmp_path, "describe", [_spec("train", "d1")])
    record_datasets(tmp_path, "describe", [_spec("train", "d2")])
    assert [s["profile"]["manifest_sha256"] for s in recorded_datasets(tmp_path, "train")] == ["t1", "v1"]
    assert [s["profile"]["manifest_sha256"] for s in recorded_datasets(tmp_path, "describe")] == ["d2"]
    assert recorded_datasets(tmp_path, "eval") is None
    with pytest.raises(DataChangedError, match="val"):
        check_resumed_datasets(tmp_path, "train", [_spec("train", "t1"), _spec("val", "v2")])


def test_a_split_with_no_recorded_digest_has_nothing_to_compare(tmp_path):
    """A run recorded before manifests were digested (no `manifest_sha256`) resumes on any set: there is nothing
    to say it changed; a split recorded with a digest is still checked."""
    record_datasets(tmp_path, "train", [_spec("train", None), _spec("val", "v1")])
    check_resumed_datasets(tmp_path, "train", [_spec("train", "t9"), _spec("val", "v1")])
    with pytest.raises(DataChangedError):
        check_resumed_datasets(tmp_path, "train", [_spec("train", "t9"), _spec("val", "v9")])


def _export(folder, content=b"1", config=True):
    """A run folder's export (`<folder>/export/w.safetensors`), the folder made a run folder by its config.yaml."""
    (folder / "export").mkdir(parents=True)
    (folder / "export" / "w.safetensors").write_bytes(content)
    if config:
        (folder / "config.yaml").write_text("run: {name: x}\n")
    return folder / "export"


def _record(folder, run_id):
    (folder / "tracking").mkdir(parents=True, exist_ok=True)
    (folder / "tracking" / "train.json").write_text(json.dumps({"run_id": run_id}))


def test_with_the_runs_own_export_gone_the_folder_record_decides(tmp_path):
    """The run's own export is gone: an export in a run folder recorded as this MLflow run (the folder moved) or
    in no run folder at all is accepted; one in a folder recorded as another run is that run's model: refused."""
    gone = tmp_path / "run"  # the run's folder as tagged; its export is no longer there
    moved = tmp_path / "moved"
    _record(moved, "r1")
    check_export_owner("r1", gone, _export(moved))
    loose = _export(tmp_path / "shipped", config=False)  # no config.yaml beside it: not a run folder
    check_export_owner("r1", gone, loose)
    check_export_owner("r1", None, loose)
    other = tmp_path / "other"
    _record(other, "r2")
    with pytest.raises(ExportOwnerError, match="r2"):
        check_export_owner("r1", gone, _export(other))
    with pytest.raises(ExportOwnerError):
        check_export_owner("r1", None, other / "export")


def test_the_runs_own_export_folder_is_accepted_whatever_it_holds(tmp_path):
    """`<run folder>/export` is the run's own: accepted even when another run's record sits beside it."""
    own = _export(tmp_path / "run")
    _record(tmp_path / "run", "r1")
    check_export_owner("r1", tmp_path / "run", own)


def test_files_of_one_name_in_two_export_subfolders_are_two_files(tmp_path):
    """Files are identified by their path in the export, not only their name: `a/w.bin` and `b/w.bin` are two
    files, so changing either one, or swapping them, changes the model."""
    for sub in ("a", "b"):
        (tmp_path / "e" / sub).mkdir(parents=True)
    (tmp_path / "e" / "a" / "w.bin").write_bytes(b"1")
    (tmp_path / "e" / "b" / "w.bin").write_bytes(b"2")
    digests = [artifacts_digest({"export": str(tmp_path / "e")})]
    (tmp_path / "e" / "a" / "w.bin").write_bytes(b"3")  # the first of the two changed
    digests.append(artifacts_digest({"export": str(tmp_path / "e")}))
    (tmp_path / "e" / "a" / "w.bin").write_bytes(b"2")
    (tmp_path / "e" / "b" / "w.bin").write_bytes(b"1")  # swapped
    digests.append(artifacts_digest({"export": str(tmp_path / "e")}))
    assert len(set(digests)) == 3


def test_an_export_changed_since_training_is_refused_by_its_folders_record_alone(tmp_path):
    """A run whose digest tag never reached the server (offline at export) is still checked: the run folder's
    `export.json` records the files, and the message names the file that changed."""
    export = _export(tmp_path / "run")
    tagged = []
    record_export(SimpleNamespace(set_tags=tagged.append), tmp_path / "run", export)
    assert tagged == [{EXPORT_TAG: artifacts_digest({"export": str(export)})}]
    assert (tmp_path / "run" / EXPORT_RECORD).is_file()
    untagged = SimpleNamespace(info=SimpleNamespace(run_id="r1"), data=SimpleNamespace(tags={}))
    check_export_unchanged(untagged, export, tmp_path / "run")
    (export / "w.safetensors").write_bytes(b"2")
    with pytest.raises(UserError, match=r"w\.safetensors \(other content\)"):
        check_export_unchanged(untagged, export, tmp_path / "run")


def test_a_version_of_a_model_that_exists_already_is_registered():
    """`create_registered_model` refusing an existing name (a second job made it first) is fine; any other
    refusal raises."""
    class Registry:
        def __init__(self, refusal):
            self.refusal, self.versions = refusal, []

        def create_registered_model(self, name):
            raise MlflowException("no", error_code=self.refusal)

        def create_model_version(self, name, source, run_id, model_id, tags=None, description=None):
            self.versions.append(source)
            return SimpleNamespace(version=len(self.versions))

    assert new_version(Registry(RESOURCE_ALREADY_EXISTS), "m", "runs:/r1/model", "r1", None) == "1"
    with pytest.raises(MlflowException):
        new_version(Registry(PERMISSION_DENIED), "m", "runs:/r1/model", "r1", None)

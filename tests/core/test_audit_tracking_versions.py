"""Mutation-audit guards of `core/tracking/versions.py` the registry tests leave open: a folder record of another
export than the run's tag names no files, and each model name takes its alias turns under its own lock."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.tracking.loggers import NullLogger
from mmlnb_dist.core.tracking.versions import EXPORT_TAG, alias_turn, artifacts_digest, check_export_unchanged, \
    record_export


def _export(folder, content):
    folder.mkdir(parents=True)
    (folder / "w.safetensors").write_bytes(content)
    return folder


def test_a_folder_record_of_another_export_than_the_runs_tag_lists_no_files(tmp_path):
    """The run's tag decides: when `export.json` records another export (re-exported since the run was tagged), its
    file list says nothing about the run's files, so the refusal gives the digests, not a wrong list of files."""
    tagged = artifacts_digest({"export": str(_export(tmp_path / "a", b"1"))})
    record_export(NullLogger(), tmp_path, _export(tmp_path / "b", b"2"))  # export.json of another export
    run = SimpleNamespace(data=SimpleNamespace(tags={EXPORT_TAG: tagged}), info=SimpleNamespace(run_id="r1"))
    with pytest.raises(UserError, match=f"digest {tagged[:12]} at export, now a different one") as refused:
        check_export_unchanged(run, _export(tmp_path / "c", b"3"), tmp_path)
    assert "w.safetensors" not in str(refused.value)


def test_each_model_name_takes_its_alias_turns_under_its_own_lock(tmp_path):
    """Two models of one store do not wait for each other: one lock file per name, beside the SQLite store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name in ("clip-nb", "fusion-nb", "clip-nb"):
        with alias_turn(uri, name):
            pass
    assert len(list(tmp_path.glob(".mmlnb-alias-*.lock"))) == 2

"""`evaluate --export/--checkpoint` naming no such folder, a file, or the run folder itself (`runs/r1` instead of
`runs/r1/export` or `runs/r1/checkpoints`) is refused naming that argument: it fell back to the default profile
(no config.yaml beside the folder) and stopped on the profile's shard set, "shard folder not found: shards/demo",
which says nothing about the mistyped path."""
from __future__ import annotations

import pytest

from support.cli import run_cli


def _refused(*args: str) -> str:
    code, _, err = run_cli(["evaluate", *args])
    assert code == 2 and "Traceback" not in err, err
    assert "shards/demo" not in err, err
    return err


@pytest.mark.parametrize("flag", ["--export", "--checkpoint"])
def test_a_missing_folder_is_named(tmp_path, flag):
    err = _refused(flag, str(tmp_path / "runs" / "r1" / "exportt"))
    assert f"{flag} {tmp_path / 'runs' / 'r1' / 'exportt'}" in err and "no such folder" in err


def test_a_file_is_named(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    err = _refused("--export", str(tmp_path / "model.bin"))
    assert f"--export {tmp_path / 'model.bin'}" in err and "not a folder" in err


@pytest.mark.parametrize("flag, sub", [("--export", "export"), ("--checkpoint", "checkpoints")])
def test_the_run_folder_is_answered_with_the_folder_inside_it(tmp_path, flag, sub):
    run = tmp_path / "r1"
    (run / "export").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "config.yaml").write_text("run: {name: r1}\n")
    err = _refused(flag, str(run))
    assert f"{flag} {run / sub}" in err


def test_a_checkpoint_tag_folder_is_answered_with_the_checkpoints_folder_and_tag(tmp_path):
    ckpts = tmp_path / "r1" / "checkpoints"
    (ckpts / "epoch-0003").mkdir(parents=True)
    (ckpts / "latest").write_text("epoch-0003")
    err = _refused("--checkpoint", str(ckpts / "epoch-0003"))
    assert f"--checkpoint {ckpts} --tag epoch-0003" in err

"""Nothing rewrites a folder a running job reads. A `shards build` (or a tiling, a pipeline rebuilding its shards)
into the shard set of a live training used to succeed: from the next epoch the loader read the new shards, whose
split put former train slides into val, so validation balanced accuracy jumped from 0.33 to 0.93 and the run's
records still named the old set. Readers now hold a shared lock on the folder (`core.runlock.ReadLock`, taken by
`core.recipe.run` for the folders a recipe `reads`, and by describe and feature extraction); writers are refused
naming who reads, and a reader is refused while a writer holds the folder."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.core.recipe import run
from mmlnb_dist.core.runlock import FolderInUseError, FolderLock, ReadLock

from support.probe import LinearProbe, multi_hot_shards, probe_config
from support.shards import write_patch_folder

ROOT = Path(__file__).resolve().parents[2]

READER = """
import sys, time
from pathlib import Path
from mmlnb_dist.core.runlock import ReadLock
folder, ready, release = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
with ReadLock(folder, "train"):
    ready.write_text("held")
    while not release.exists():
        time.sleep(0.05)
"""


def test_readers_share_and_keep_writers_out(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    ready, release = tmp_path / "ready", tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-c", READER, str(folder), str(ready), str(release)], cwd=ROOT)
    try:
        while not ready.exists():
            assert proc.poll() is None, "reader process died"
            time.sleep(0.05)
        with ReadLock(folder, "evaluate"):  # a second reader is welcome
            pass
        with pytest.raises(FolderInUseError, match=rf"{folder} is being read by `train` \(pid {proc.pid}"):
            FolderLock(folder, "shards build").acquire()
        with pytest.raises(FolderInUseError, match="being read by `train`"):
            FolderLock(folder, "shards build").refuse_if_held()
    finally:
        release.write_text("")
        proc.wait(timeout=30)
    with FolderLock(folder, "shards build"):  # free again; and while written, a reader is refused naming it
        with pytest.raises(FolderInUseError, match=rf"{folder} is being written by `shards build`"):
            ReadLock(folder, "train").acquire()
    assert not list(folder.glob(".lock.reader-*")), "a released reader leaves no record"


def test_a_folder_the_reader_cannot_write_is_read_without_a_lock(tmp_path, monkeypatch):
    import mmlnb_dist.core.runlock as runlock

    folder = tmp_path / "dataset"
    folder.mkdir()
    monkeypatch.setattr(runlock.os, "access", lambda path, mode: False)  # (chmod does not stop root, who runs CI)
    with ReadLock(folder, "train"):
        pass
    assert not (folder / ".lock").exists()


class RebuildsItsShards(LinearProbe):
    """A run that, mid-way, has another command rebuild the shard set it reads (as a second terminal would)."""

    outcome: dict = {}

    @classmethod
    def reads(cls, cfg):
        return [cfg.data.shards]

    def setup(self):
        src = write_patch_folder(Path(self.cfg.run.dir).parent / "patches", per_class=3)
        type(self).outcome["code"] = main(["shards", "build", "--input", str(src), "--out", str(self.cfg.data.shards),
                                           "--no-progress"])
        super().setup()


def test_a_shard_build_into_the_set_a_run_reads_is_refused(tmp_path, capsys):
    shards = multi_hot_shards(tmp_path / "shards")
    before = {p.name: p.read_bytes() for p in shards.iterdir() if p.suffix in (".tar", ".json")}
    run(RebuildsItsShards, probe_config(shards, tmp_path / "runs", "tracking.backends=[stdout]", "train.epochs=1"))
    assert RebuildsItsShards.outcome["code"] == 2
    assert f"{shards} is being read by `probe`" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in shards.iterdir() if p.suffix in (".tar", ".json")} == before
    assert not list(shards.glob(".lock.reader-*"))
    assert main(["shards", "build", "--input", str(write_patch_folder(tmp_path / "p2", per_class=3)), "--out",
                 str(shards), "--no-progress"]) == 0  # once the run ended


def test_the_recipes_name_the_folders_they_read():
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes import recipe_class

    cfg = load_config("cpu-demo", ["data.shards=/data/a", "vlm.pairs=/data/pairs", "fusion.image_features=/f"])
    def named(folders):
        return [str(f) for f in folders]

    assert named(recipe_class("fusion").reads(cfg)) == ["/data/a", "/f"]
    assert named(recipe_class("vlm").reads(cfg)) == ["/data/pairs"]
    assert named(recipe_class("clip").reads(load_config("clip-multilabel", ["data.shards=/data/b"]))) == ["/data/b"]


def test_a_pipeline_does_not_delete_an_output_another_job_reads(tmp_path):
    from mmlnb_dist.pipeline.stages import run_stage

    out = tmp_path / "shards"

    def build(resume):
        out.mkdir(exist_ok=True)
        (out / "keep.tar").write_bytes(b"x")
        return {}

    run_stage("shards", out, "fp-1", build)
    with ReadLock(out, "train"):
        with pytest.raises(FolderInUseError, match="being read by `train`"):
            run_stage("shards", out, "fp-2", build)
    assert (out / "keep.tar").exists()


def test_the_record_of_a_killed_reader_is_dropped_by_the_next_one(tmp_path):
    import json
    import socket

    folder = tmp_path / "shards"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = folder / f".lock.reader-{socket.gethostname()}-{dead.stdout.strip()}-1.json"
    stale.write_text(json.dumps({"command": "train", "pid": int(dead.stdout), "host": socket.gethostname()}))
    with ReadLock(folder, "train"):
        assert not stale.exists()


def test_evaluate_and_predict_do_not_read_a_shard_set_being_written(tmp_path, capsys):
    from mmlnb_dist.predict import predict_to_file
    from support.fusion import make_shards

    shards = make_shards(tmp_path, n=24, size=32)
    (tmp_path / "x").mkdir()  # an export folder that exists (a missing one is refused by name before the lock)
    with FolderLock(shards, "shards build"):
        code = main(["evaluate", "--config", "cpu-demo", f"data.shards={shards}", "--export", str(tmp_path / "x")])
        assert code == 2 and f"{shards} is being written by `shards build`" in capsys.readouterr().err
        with pytest.raises(FolderInUseError, match="being written by `shards build`"):
            predict_to_file("models:/never@champion", [shards], tmp_path / "p.csv",
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        with pytest.raises(FolderInUseError, match="being written by `shards build`"):
            predict_to_file("models:/never@champion", [next(shards.glob("val-*.tar"))], tmp_path / "p.csv",
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert not (tmp_path / "mlflow.db").exists()

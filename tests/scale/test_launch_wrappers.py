"""The launch/ wrappers run from any folder, and the paths a user passes them are relative to that folder, as for
`mmlnb-dist` itself. They used to `cd` into the checkout first (train_*.sh: `data.shards=shards/nb` given in a
project folder was looked up in the checkout, and `runs/` was written there) or to need the checkout as the
current folder (describe.sh, finetune_vlm.sh: "config file not found: launch/profiles/rtx4090.yaml" and
"No module named mmlnb_dist" from the python on PATH). Each wrapper here is run from a fresh folder holding an
`empty/` folder that is no shard set: the command's own error about `empty/manifest.json` shows that it found its
config and interpreter and read the path in the caller's folder."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.fusion import ROOT

LAUNCH = ROOT / "launch"


def run_wrapper(script: str, args, cwd: Path, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "CONFIG", "PROFILE", "HOSTFILE")}
    environ.update(env)
    return subprocess.run(["bash", str(LAUNCH / script), *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def elsewhere(tmp_path):
    """A project folder outside the checkout with a folder `empty/` in it (no manifest.json)."""
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize("script, args", [
    ("train_single_4090.sh", ["data.shards=empty"]),
    # through the DeepSpeed launcher, which also used to pass --local_rank, an argument mmlnb-dist refuses
    ("train_node.sh", ["data.shards=empty"]),
    ("finetune_vlm.sh", ["vlm.model=tiny", "vlm.pairs=empty"]),
])
def test_a_wrapper_reads_relative_paths_in_the_folder_it_is_run_from(script, args, elsewhere):
    done = run_wrapper(script, args, elsewhere, NUM_GPUS="1")
    assert done.returncode == 2, done.stderr
    assert "empty/manifest.json not found" in done.stderr, done.stderr


def test_describe_finds_its_config_and_interpreter_from_any_folder(elsewhere):
    done = run_wrapper("describe.sh", ["--adapter", "empty", "--shards", "empty", "--out", "described"], elsewhere)
    assert done.returncode == 2, done.stderr
    assert "mmlnb-dist describe: error: --adapter empty: no adapter_config.json" in done.stderr, done.stderr
    assert not (elsewhere / "described").exists()


def test_an_interpreter_without_the_package_is_named_with_the_remedy(elsewhere):
    done = run_wrapper("train_single_4090.sh", ["data.shards=empty"], elsewhere, PYTHON="/usr/bin/env")
    assert done.returncode == 2
    assert "cannot import mmlnb_dist" in done.stderr and "install.sh" in done.stderr, done.stderr


def test_train_multinode_without_a_hostfile_says_which_file_it_looked_for(elsewhere):
    done = run_wrapper("train_multinode.sh", ["data.shards=empty"], elsewhere, HOSTFILE="hosts")
    assert done.returncode == 2
    assert "hostfile hosts not found" in done.stderr and "hostfile.example" in done.stderr, done.stderr

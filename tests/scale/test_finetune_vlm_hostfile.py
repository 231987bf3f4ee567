"""launch/finetune_vlm.sh across nodes (HOSTFILE=...) reads the hostfile as launch/train_multinode.sh does, and both
take NUM_GPUS as the processes per node.

- A HOSTFILE that does not exist (a typo): DeepSpeed's runner logs "Unable to find hostfile, will proceed with
  training with local resources only" and fine-tuned on this node alone; it is now refused, naming the file.
- A hostfile line DeepSpeed cannot read ended in a traceback from its runner; it is named with its line number.
- Without NUM_GPUS the runner got --num_gpus 1 (the one-process default of the wrapper): one GPU per node whatever
  the hostfile's slots said. The slots now decide unless NUM_GPUS is set.
- The master is the first host of the hostfile (MASTER_ADDR wins), as in train_multinode.sh.
A stand-in interpreter prints the DeepSpeed runner's arguments instead of starting it; the runner's own argument
parser reads them back."""
from __future__ import annotations

import os
import subprocess

import pytest

from support.launch_wrappers import LAUNCH, wrapper_runner

FAKE = """#!/usr/bin/env bash
if [[ "$1 $2" == "-m deepspeed.launcher.runner" ]]; then shift 2; printf '%s\\n' "$@"; exit 0; fi
exec {python} "$@"
"""


@pytest.fixture
def run(tmp_path):
    go = wrapper_runner(tmp_path, FAKE)
    return lambda **env: go("finetune_vlm.sh", ["vlm.pairs=p"], **env)


def test_a_hostfile_that_does_not_exist_is_refused(run, tmp_path):
    done = run(HOSTFILE="hots")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "", "the launcher must not start"
    assert "hostfile hots not found" in done.stderr, done.stderr


def test_a_bad_hostfile_line_is_named(run, tmp_path):
    (tmp_path / "hosts").write_text("# nodes\nnode1 slots=8\nnode2\n")
    done = run(HOSTFILE="hosts")
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert "hosts:3" in done.stderr and "slots=" in done.stderr, done.stderr


@pytest.mark.parametrize("num_gpus, expected", [(None, -1), ("2", 2)], ids=["slots", "NUM_GPUS"])
def test_the_hostfile_slots_decide_the_processes_per_node_unless_num_gpus_is_set(run, tmp_path, num_gpus,
                                                                                  expected):
    from deepspeed.launcher.runner import parse_args

    (tmp_path / "hosts").write_text((LAUNCH / "hostfile.example").read_text())
    done = run(HOSTFILE="hosts", **({"NUM_GPUS": num_gpus} if num_gpus else {}))
    assert done.returncode == 0, done.stderr
    ds = parse_args(done.stdout.splitlines())
    assert ds.hostfile == "hosts" and ds.num_gpus == expected  # -1: every slot of every host
    # node1 is elsewhere: a port derived from the run, not the fixed 29500 (test_hostfile_master_port_here.py)
    assert ds.master_addr == "node1" and 20000 <= ds.master_port < 30000
    assert [ds.user_script, *ds.user_args][:2] == ["mmlnb_dist.cli", "finetune-vlm"]


def test_a_master_addr_and_port_given_are_kept(run, tmp_path):
    from deepspeed.launcher.runner import parse_args

    (tmp_path / "hosts").write_text("gpu-a slots=2\ngpu-b slots=2\n")
    done = run(HOSTFILE="hosts", MASTER_ADDR="10.0.0.7", MASTER_PORT="29611")
    assert done.returncode == 0, done.stderr
    ds = parse_args(done.stdout.splitlines())
    assert (ds.master_addr, ds.master_port) == ("10.0.0.7", 29611)


# -- train_multinode.sh: the same rule for NUM_GPUS ------------------------------------------------------------------
@pytest.mark.parametrize("num_gpus, expected", [(None, -1), ("2", 2)], ids=["slots", "NUM_GPUS"])
def test_train_multinode_takes_num_gpus_per_node_as_finetune_vlm_does(tmp_path, num_gpus, expected):
    """NUM_GPUS (what narrows train_node.sh and finetune_vlm.sh) was ignored by train_multinode.sh: every slot of the
    hostfile trained whatever it said."""
    from deepspeed.launcher.runner import parse_args

    (tmp_path / "hosts").write_text("gpu-a slots=8\ngpu-b slots=8\n")
    done = wrapper_runner(tmp_path, FAKE)("train_multinode.sh", ["data.shards=s"], HOSTFILE="hosts",
                                          **({"NUM_GPUS": num_gpus} if num_gpus else {}))
    assert done.returncode == 0, done.stderr
    assert parse_args(done.stdout.splitlines()).num_gpus == expected


def test_train_multinode_refuses_a_num_gpus_that_is_no_number(tmp_path):
    (tmp_path / "hosts").write_text("gpu-a slots=8\n")
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "CONFIG", "PROFILE")}
    done = subprocess.run(["bash", str(LAUNCH / "train_multinode.sh"), "data.shards=s"], cwd=tmp_path,
                          env={**environ, "HOSTFILE": "hosts", "NUM_GPUS": "all"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "NUM_GPUS=all is not a positive number" in done.stderr, done.stderr

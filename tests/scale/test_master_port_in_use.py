"""A MASTER_PORT the user sets is checked before anything starts, as the wrapper can check it: on one node, a port
some process here already listens on (another run's rendezvous) failed torchrun with an EADDRINUSE traceback and,
under the DeepSpeed launcher, every rank after its imports; with a hostfile, a port that cannot exist (70000,
`abc`) reached every node (train.sbatch and train_node.sh already refused it)."""
from __future__ import annotations

import socket

import pytest

from support.launch_wrappers import wrapper_runner

FAKE = """#!/usr/bin/env bash
if [[ "$1" == -c && "$2" == *device_count* ]]; then echo 0; exit 0; fi
if [[ "$1 $2" == "-m deepspeed.launcher.runner" || "$1 $2" == "-m torch.distributed.run" ]]; then
  shift 2; printf '%s\\n' "$@"; exit 0
fi
exec {python} "$@"
"""
ONE_NODE = [("train_node.sh", ["data.shards=s"]), ("finetune_vlm.sh", ["vlm.pairs=p"]),
            ("describe.sh", ["--adapter", "a", "--shards", "s", "--out", "o"])]
HOSTFILE = [("train_multinode.sh", ["data.shards=s"]), ("finetune_vlm.sh", ["vlm.pairs=p"])]


@pytest.mark.parametrize("script, args", ONE_NODE, ids=[w[0] for w in ONE_NODE])
def test_a_master_port_in_use_here_is_refused_before_the_launch(tmp_path, busy_port, script, args):
    done = wrapper_runner(tmp_path, FAKE)(script, args, MASTER_PORT=str(busy_port), NUM_GPUS="2")
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert f"MASTER_PORT={busy_port} is in use" in done.stderr, done.stderr


@pytest.mark.parametrize("script, args", ONE_NODE, ids=[w[0] for w in ONE_NODE])
def test_a_free_master_port_is_the_one_the_launcher_gets(tmp_path, script, args):
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    done = wrapper_runner(tmp_path, FAKE)(script, args, MASTER_PORT=str(port), NUM_GPUS="2")
    assert done.returncode == 0, done.stderr
    argv = done.stdout.splitlines()
    assert argv[argv.index("--master_port") + 1] == str(port), argv


@pytest.mark.parametrize("port", ["70000", "abc"])
@pytest.mark.parametrize("script, args", HOSTFILE, ids=[w[0] for w in HOSTFILE])
def test_with_a_hostfile_a_master_port_that_is_no_port_is_refused(tmp_path, script, args, port):
    (tmp_path / "hosts").write_text("node1 slots=2\nnode2 slots=2\n")
    done = wrapper_runner(tmp_path, FAKE)(script, args, HOSTFILE="hosts", MASTER_PORT=port)
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert f"MASTER_PORT={port} is not a port number" in done.stderr, done.stderr

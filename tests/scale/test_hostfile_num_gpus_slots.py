"""NUM_GPUS larger than a host's slots in the hostfile (`node2 slots=4`, NUM_GPUS=8): DeepSpeed's runner replaces
every host's slots by range(NUM_GPUS) without comparing them, so node2 started 8 ranks on its 4 GPUs (two ranks a
GPU, NCCL failing later on a duplicate GPU). train_multinode.sh and finetune_vlm.sh now refuse it before any node
starts, naming the host and its slots, as train_node.sh refuses more processes than the node's GPUs. Slots written
with a leading zero (`slots=08`, which DeepSpeed reads as 8) are compared as decimal numbers."""
from __future__ import annotations

import pytest

from support.launch_wrappers import wrapper_runner

FAKE = """#!/usr/bin/env bash
if [[ "$1 $2" == "-m deepspeed.launcher.runner" ]]; then shift 2; printf '%s\\n' "$@"; exit 0; fi
exec {python} "$@"
"""
WRAPPERS = [("train_multinode.sh", ["data.shards=s"]), ("finetune_vlm.sh", ["vlm.pairs=p"])]


@pytest.mark.parametrize("script, args", WRAPPERS, ids=[w[0] for w in WRAPPERS])
def test_more_processes_per_node_than_a_hosts_slots_is_refused(tmp_path, script, args):
    (tmp_path / "hosts").write_text("# nodes\nnode1 slots=8\nnode2 slots=4\n")
    done = wrapper_runner(tmp_path, FAKE)(script, args, HOSTFILE="hosts", NUM_GPUS="8")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "", "the launcher must not start"
    assert "NUM_GPUS=8" in done.stderr and "node2 slots=4" in done.stderr, done.stderr


@pytest.mark.parametrize("script, args", WRAPPERS, ids=[w[0] for w in WRAPPERS])
def test_processes_within_every_hosts_slots_start(tmp_path, script, args):
    from deepspeed.launcher.runner import parse_args

    (tmp_path / "hosts").write_text("node1 slots=08\nnode2 slots=4\n")
    done = wrapper_runner(tmp_path, FAKE)(script, args, HOSTFILE="hosts", NUM_GPUS="4")
    assert done.returncode == 0, done.stderr
    assert parse_args(done.stdout.splitlines()).num_gpus == 4

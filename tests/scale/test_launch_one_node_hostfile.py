"""The one-node DeepSpeed wrappers (train_node.sh, NUM_GPUS>1 finetune_vlm.sh) gave the runner no --hostfile, so it
read its default, /job/hostfile: on machines that have one (DLTS-style clusters write it) a one-node run became a
multi-node pdsh launch on the hosts listed there, and CUDA_VISIBLE_DEVICES was ignored. They now name a hostfile
that is none, so the runner takes this node's resources only, wherever it runs."""
from __future__ import annotations

import os

import pytest

from support.launch_wrappers import NO_GPU_DEEPSPEED_PRINTER, wrapper_runner

FAKE = NO_GPU_DEEPSPEED_PRINTER
WRAPPERS = [("train_node.sh", ["data.shards=s"]), ("finetune_vlm.sh", ["vlm.pairs=p"])]


@pytest.mark.parametrize("script, args", WRAPPERS, ids=[w[0] for w in WRAPPERS])
def test_a_one_node_run_does_not_read_the_runners_default_hostfile(tmp_path, script, args):
    from deepspeed.launcher.runner import DLTS_HOSTFILE, parse_args

    done = wrapper_runner(tmp_path, FAKE)(script, args, NUM_GPUS="2")
    assert done.returncode == 0, done.stderr
    hostfile = parse_args(done.stdout.splitlines()).hostfile
    assert hostfile != DLTS_HOSTFILE and not os.path.isfile(hostfile), hostfile

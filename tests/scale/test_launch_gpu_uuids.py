"""CUDA_VISIBLE_DEVICES naming GPUs by UUID (`GPU-8f2a...`, `MIG-...`: what some schedulers and device plugins
set): the DeepSpeed wrappers hand it to DeepSpeed's runner as `--include localhost:GPU-...`, whose parser reads every
slot as a number and failed with a ValueError traceback after the start-up. train_node.sh and finetune_vlm.sh now
refuse it before anything starts and say how to give indices."""
from __future__ import annotations

import pytest

from support.launch_wrappers import wrapper_runner

FAKE = """#!/usr/bin/env bash
if [[ "$1" == -c && "$2" == *device_count* ]]; then
  IFS=, read -r -a ids <<< "${{CUDA_VISIBLE_DEVICES:-}}"; echo "${{#ids[@]}}"; exit 0
fi
if [[ "$1 $2" == "-m deepspeed.launcher.runner" ]]; then
  echo "CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES-<unset>}}"; shift 2; printf '%s\\n' "$@"; exit 0
fi
exec {python} "$@"
"""
WRAPPERS = [("train_node.sh", ["data.shards=s"]), ("finetune_vlm.sh", ["vlm.pairs=p"])]


@pytest.mark.parametrize("script, args", WRAPPERS, ids=[w[0] for w in WRAPPERS])
def test_gpus_named_by_uuid_are_refused_before_the_launch(tmp_path, script, args):
    visible = "GPU-8f2a1c3e-0000-1111-2222-333344445555,GPU-9e3b2d4f-0000-1111-2222-333344445555"
    done = wrapper_runner(tmp_path, FAKE)(script, args, CUDA_VISIBLE_DEVICES=visible, NUM_GPUS="2")
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert "CUDA_VISIBLE_DEVICES" in done.stderr and "index" in done.stderr, done.stderr


@pytest.mark.parametrize("script, args", WRAPPERS, ids=[w[0] for w in WRAPPERS])
def test_gpus_named_by_index_are_passed_on(tmp_path, script, args):
    done = wrapper_runner(tmp_path, FAKE)(script, args, CUDA_VISIBLE_DEVICES="2,3", NUM_GPUS="2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "CUDA_VISIBLE_DEVICES=2,3"

"""How many processes the launch/ wrappers start on this node, and on which GPUs (NUM_GPUS, CUDA_VISIBLE_DEVICES).

- DeepSpeed's runner ignores CUDA_VISIBLE_DEVICES when it is given --num_gpus (it says so in one log line, drops
  the variable and gives the ranks GPUs 0..N-1): `CUDA_VISIBLE_DEVICES=2,3 launch/train_node.sh` trained on GPUs 0
  and 1, which may be another job's. The wrappers now leave the choice of GPUs to CUDA_VISIBLE_DEVICES.
- NUM_GPUS that is no positive number: finetune_vlm.sh and describe.sh died on "two: unbound variable" (bash
  arithmetic), or ran one process for NUM_GPUS=0 or -1; train_node.sh passed 0 on (DeepSpeed: every GPU).
- NUM_GPUS larger than the GPUs this node shows: the ranks beyond them took a GPU another rank had (local rank
  modulo the GPUs), and NCCL failed later on a duplicate GPU. It is refused before anything starts. (On a machine
  without GPUs any number of CPU processes may run, as before.)

A stand-in interpreter answers torch's GPU count (FAKE_GPUS, narrowed by CUDA_VISIBLE_DEVICES as CUDA does) and
prints the launcher's command line with the CUDA_VISIBLE_DEVICES it sees instead of starting anything; everything
else runs the real interpreter."""
from __future__ import annotations

import pytest

from support.launch_wrappers import wrapper_runner
from support.ranks import port_is_free

FAKE = """#!/usr/bin/env bash
if [[ "$1" == -c && "$2" == *device_count* ]]; then
  if [[ -n "${{CUDA_VISIBLE_DEVICES+set}}" ]]; then
    IFS=, read -r -a ids <<< "$CUDA_VISIBLE_DEVICES"; echo "${{#ids[@]}}"
  else
    echo "${{FAKE_GPUS:-0}}"
  fi
  exit 0
fi
if [[ "$1 $2" == "-m deepspeed.launcher.runner" || "$1 $2" == "-m torch.distributed.run" ]]; then
  echo "CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES-<unset>}}"; shift 2; printf '%s\\n' "$@"; exit 0
fi
exec {python} "$@"
"""

# (script, its arguments, the launcher's option that gives the process count)
WRAPPERS = [
    ("train_node.sh", ["data.shards=empty"], "--num_gpus"),
    ("finetune_vlm.sh", ["vlm.pairs=empty"], "--num_gpus"),
    ("describe.sh", ["--adapter", "a", "--shards", "s", "--out", "o"], "--nproc_per_node"),
]
IDS = [w[0] for w in WRAPPERS]


@pytest.fixture
def run(tmp_path):
    return wrapper_runner(tmp_path, FAKE)


def _seen(done):
    """The CUDA_VISIBLE_DEVICES the launcher saw, and its arguments."""
    lines = done.stdout.splitlines()
    assert lines and lines[0].startswith("CUDA_VISIBLE_DEVICES="), (done.stdout, done.stderr)
    return lines[0].split("=", 1)[1], lines[1:]


@pytest.mark.parametrize("script, num_gpus, expected", [
    ("train_node.sh", None, "2,3"), ("train_node.sh", "2", "2,3"), ("train_node.sh", "1", "2"),
    ("finetune_vlm.sh", "2", "2,3"),  # (by default, and for NUM_GPUS=1, it runs one plain process)
])
def test_the_deepspeed_wrappers_train_on_the_gpus_cuda_visible_devices_names(run, script, num_gpus, expected):
    args = {w[0]: w[1] for w in WRAPPERS}[script]
    env = {"FAKE_GPUS": "4", "CUDA_VISIBLE_DEVICES": "2,3", **({"NUM_GPUS": num_gpus} if num_gpus else {})}
    done = run(script, args, **env)
    assert done.returncode == 0, done.stderr
    visible, argv = _seen(done)
    # the runner takes its GPUs from CUDA_VISIBLE_DEVICES only when it is not told --num_gpus
    assert "--num_gpus" not in argv, argv
    assert visible == expected, visible


@pytest.mark.parametrize("script, args, count_option", WRAPPERS, ids=IDS)
def test_without_cuda_visible_devices_the_count_goes_to_the_launcher(run, script, args, count_option):
    done = run(script, args, FAKE_GPUS="4", NUM_GPUS="3")
    assert done.returncode == 0, done.stderr
    visible, argv = _seen(done)
    assert argv[argv.index(count_option) + 1] == "3", argv


@pytest.mark.parametrize("script, args, count_option", WRAPPERS, ids=IDS)
@pytest.mark.parametrize("num_gpus", ["two", "0", "-1"])
def test_a_num_gpus_that_is_no_positive_number_is_refused(run, script, args, count_option, num_gpus):
    done = run(script, args, FAKE_GPUS="4", NUM_GPUS=num_gpus)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "", "nothing may start"
    assert f"NUM_GPUS={num_gpus} is not a positive number" in done.stderr, done.stderr


@pytest.mark.parametrize("script, args, count_option", WRAPPERS, ids=IDS)
@pytest.mark.parametrize("visible", [None, "0,1"])
def test_more_processes_than_gpus_is_refused_before_anything_starts(run, script, args, count_option, visible):
    env = {"FAKE_GPUS": "2"} if visible is None else {"FAKE_GPUS": "8", "CUDA_VISIBLE_DEVICES": visible}
    done = run(script, args, NUM_GPUS="4", **env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "", "nothing may start"
    assert "NUM_GPUS=4 but this node shows 2 GPUs" in done.stderr, done.stderr


def test_a_machine_without_gpus_runs_the_processes_it_is_asked_for(run):
    """The CPU (gloo) runs of the tests and the CPU demo: no GPU to count against."""
    done = run("train_node.sh", ["data.shards=empty"], FAKE_GPUS="0", NUM_GPUS="3")
    assert done.returncode == 0, done.stderr
    visible, argv = _seen(done)
    assert argv[argv.index("--num_gpus") + 1] == "3", argv


# -- the rendezvous port of a one-node run --------------------------------------------------------------------------
def _in_use_port():
    """A socket listening on the launchers' default port 29500 (None where something else holds it already)."""
    import socket

    sock = socket.socket()
    try:
        sock.bind(("", 29500))
    except OSError:
        sock.close()
        return None
    sock.listen()
    return sock


PORT_OPTION = {"train_node.sh": "--master_port", "finetune_vlm.sh": "--master_port", "describe.sh": "--master_port"}


@pytest.mark.parametrize("script, args, count_option", WRAPPERS, ids=IDS)
def test_a_second_run_on_the_machine_gets_a_free_rendezvous_port(run, script, args, count_option):
    """Both launchers rendezvous on port 29500 unless told otherwise: a second one-node run beside the first (the
    other GPUs of the machine, CUDA_VISIBLE_DEVICES) failed at its rendezvous, "address already in use"."""
    held = _in_use_port()
    try:
        done = run(script, args, FAKE_GPUS="0", NUM_GPUS="2")
        assert done.returncode == 0, done.stderr
        _, argv = _seen(done)
        ports = [a.split("=", 1)[1] for a in argv if a.startswith(PORT_OPTION[script] + "=")]
        ports += [argv[i + 1] for i, a in enumerate(argv) if a == PORT_OPTION[script]]
        assert len(ports) == 1, argv
        assert int(ports[0]) != 29500 and port_is_free(int(ports[0])), ports
    finally:
        if held is not None:
            held.close()


@pytest.mark.parametrize("script, args, count_option", WRAPPERS, ids=IDS)
def test_a_master_port_the_user_sets_is_the_one_the_launcher_gets(run, script, args, count_option):
    """The DeepSpeed runner and torchrun ignore MASTER_PORT in the environment (their own default, 29500, went to
    the ranks)."""
    done = run(script, args, FAKE_GPUS="0", NUM_GPUS="2", MASTER_PORT="29533")
    assert done.returncode == 0, done.stderr
    _, argv = _seen(done)
    assert argv[argv.index(PORT_OPTION[script]) + 1] == "29533", argv


def test_deepspeeds_runner_gives_the_ranks_the_gpus_cuda_visible_devices_names(run, monkeypatch):
    """The wrapper's command line and environment, given to DeepSpeed's own runner on a node of 4 GPUs (its
    process start stubbed): the ranks' GPUs (world_info, which its launch turns into their CUDA_VISIBLE_DEVICES)
    are 2 and 3. With --num_gpus 2, what the wrapper passed before, they were 0 and 1."""
    import base64
    import json

    from deepspeed.accelerator import get_accelerator
    from deepspeed.launcher import runner

    done = run("train_node.sh", ["data.shards=empty"], FAKE_GPUS="4", CUDA_VISIBLE_DEVICES="2,3", NUM_GPUS="2")
    assert done.returncode == 0, done.stderr
    visible, argv = _seen(done)
    started = []

    class Started:
        returncode = 0

        def __init__(self, cmd, **kw):
            started.append(cmd)

        def wait(self):
            return 0

        def poll(self):
            return 0

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setattr(type(get_accelerator()), "device_count", lambda self: 4)
    monkeypatch.setattr(runner.subprocess, "Popen", Started)
    try:
        runner.main(argv)
    except SystemExit as ended:
        assert ended.code in (0, None), ended
    info = [a for a in started[0] if a.startswith("--world_info=")][0].split("=", 1)[1]
    assert json.loads(base64.urlsafe_b64decode(info)) == {"localhost": [2, 3]}

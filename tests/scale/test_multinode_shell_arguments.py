"""DeepSpeed's multi-node launcher (pdsh, a hostfile of several hosts) runs every node's command through a remote
shell: `cd <folder>; python -u -m deepspeed.launcher.launch ... <arguments>`, the folder unquoted and an argument
quoted only when it holds a space. A folder with a space (`cd /shared/my runs` failed and the ranks ran in the home
folder, relative paths and run folders there), or an override holding what the shell reads (`run.name=a;b`,
`run.name=$USER-x`, `tracking.tags={a:1,b:2}` split in two by brace expansion) reached the ranks changed, or not at
all. train_multinode.sh and finetune_vlm.sh now refuse them before any node starts, naming the argument; one host
(no shell) takes them as they are."""
from __future__ import annotations

import pytest

from support.launch_wrappers import wrapper_runner

FAKE = """#!/usr/bin/env bash
if [[ "$1 $2" == "-m deepspeed.launcher.runner" ]]; then shift 2; printf '%s\\n' "$@"; exit 0; fi
exec {python} "$@"
"""
WRAPPERS = [("train_multinode.sh", "data.shards=s"), ("finetune_vlm.sh", "vlm.pairs=p")]
IDS = [w[0] for w in WRAPPERS]


@pytest.mark.parametrize("script, first", WRAPPERS, ids=IDS)
@pytest.mark.parametrize("arg", ["run.name=a;b", "run.name=$USER-x", "run.name=a b$c", "tracking.tags={a:1,b:2}",
                                 "run.name=it's", "run.name=a`b`"])
def test_an_argument_the_remote_shell_would_change_is_refused(tmp_path, script, first, arg):
    (tmp_path / "hosts").write_text("node1 slots=2\nnode2 slots=2\n")
    done = wrapper_runner(tmp_path, FAKE)(script, [first, arg], HOSTFILE="hosts")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "", "the launcher must not start"
    assert arg in done.stderr and "shell" in done.stderr, done.stderr


@pytest.mark.parametrize("script, first", WRAPPERS, ids=IDS)
def test_a_folder_the_remote_shell_cannot_cd_to_is_refused(tmp_path, script, first):
    folder = tmp_path / "my runs"
    folder.mkdir()
    (folder / "hosts").write_text("node1 slots=2\nnode2 slots=2\n")
    done = wrapper_runner(folder, FAKE)(script, [first], HOSTFILE="hosts")
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert str(folder) in done.stderr, done.stderr


@pytest.mark.parametrize("script, first", WRAPPERS, ids=IDS)
def test_plain_overrides_lists_and_spaced_values_reach_the_launcher(tmp_path, script, first):
    (tmp_path / "hosts").write_text("node1 slots=2\nnode2 slots=2\n")
    args = [first, "data.splits=[train,val]", "run.name=a b", "tracking.tags={a: 1, b: 2}", "x.y=-1e-3"]
    done = wrapper_runner(tmp_path, FAKE)(script, args, HOSTFILE="hosts")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-len(args):] == args


def test_one_host_starts_without_a_shell_and_takes_any_argument(tmp_path):
    (tmp_path / "hosts").write_text("node1 slots=2\n")
    done = wrapper_runner(tmp_path, FAKE)("train_multinode.sh", ["run.name=a;b"], HOSTFILE="hosts")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "run.name=a;b"

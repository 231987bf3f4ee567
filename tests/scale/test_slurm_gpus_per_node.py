"""The processes per node of launch/slurm/train.sbatch, from Slurm's `--gpus-per-node` as the job sees it
(SLURM_GPUS_PER_NODE, when SLURM_GPUS_ON_NODE is not set): `[type:]count`, or several types (`a100:2,v100:1`: three
GPUs, not the last count alone, which started one process on a three-GPU node), and a count repeated per node
(`4(x2)`). A form it cannot read, or nodes with different counts, is refused naming the variable and GPUS_PER_NODE."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.slurm_deepspeed import sbatch_deepspeed

def _sbatch(tmp: Path, **extra: str) -> subprocess.CompletedProcess:
    return sbatch_deepspeed(tmp, "g", HOSTFILE=str(tmp / "hosts"), **extra)


@pytest.mark.parametrize("value, count", [("8", "8"), ("a100:2", "2"), ("gpu:a100:4", "4"), ("a100:2,v100:1", "3"),
                                          ("4(x2)", "4")])
def test_slurm_gpus_per_node_forms_give_the_node_count(tmp_path, value, count):
    done = _sbatch(tmp_path, SLURM_GPUS_PER_NODE=value)
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "step.args").read_text().splitlines()
    assert argv[argv.index("--num_gpus") + 1] == count, argv
    assert (tmp_path / "hosts").read_text().splitlines() == [f"node01 slots={count}", f"node02 slots={count}"]


@pytest.mark.parametrize("value", ["4(x1),2(x1)", "a100", "gpu:a100:x"])
def test_a_form_it_cannot_read_is_refused_naming_the_variable(tmp_path, value):
    done = _sbatch(tmp_path, SLURM_GPUS_PER_NODE=value)
    assert done.returncode == 2, done.stderr
    assert f"SLURM_GPUS_PER_NODE={value}" in done.stderr and "GPUS_PER_NODE=" in done.stderr, done.stderr
    assert not (tmp_path / "step.args").exists()


def test_gpus_per_node_given_wins_and_a_bad_one_is_named(tmp_path):
    done = _sbatch(tmp_path, SLURM_GPUS_PER_NODE="a100:2", GPUS_PER_NODE="two")
    assert done.returncode == 2 and "GPUS_PER_NODE=two" in done.stderr, done.stderr
    done = _sbatch(tmp_path, SLURM_GPUS_PER_NODE="a100:2", SLURM_GPUS_ON_NODE="3")
    argv = (tmp_path / "step.args").read_text().splitlines()
    assert argv[argv.index("--num_gpus") + 1] == "3", argv


@pytest.mark.parametrize("known", [{"SLURM_GPUS_ON_NODE": "2"}, {"SLURM_GPUS_PER_NODE": "a100:2"}],
                         ids=["gpus-on-node", "gpus-per-node"])
def test_gpus_per_node_above_the_nodes_gpus_is_refused_before_the_start(tmp_path, known):
    # GPUS_PER_NODE exported by the submitting shell (or set for a bigger node) started more ranks than the node's
    # GPUs: two ranks on a GPU and NCCL failing on every node after start-up; the wrappers refuse it (NUM_GPUS)
    name, value = next(iter(known.items()))
    done = _sbatch(tmp_path, GPUS_PER_NODE="4", **known)
    assert done.returncode == 2 and not (tmp_path / "step.args").exists(), done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "GPUS_PER_NODE=4" in last and f"{name}={value}" in last, last
    done = _sbatch(tmp_path, GPUS_PER_NODE="1", **known)  # fewer is a choice, kept
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "step.args").read_text().splitlines()
    assert argv[argv.index("--num_gpus") + 1] == "1", argv


def test_gpus_per_node_given_for_nodes_with_different_counts_is_kept(tmp_path):
    # the refusal of such a SLURM_GPUS_PER_NODE asks for GPUS_PER_NODE (at most the smallest): it must be taken
    done = _sbatch(tmp_path, SLURM_GPUS_PER_NODE="4(x1),2(x1)", GPUS_PER_NODE="2")
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "step.args").read_text().splitlines()
    assert argv[argv.index("--num_gpus") + 1] == "2", argv

"""Loader workers outlive a scheduler's SIGTERM. Slurm (a time limit, `scancel`), Kubernetes and `kill -TERM -PGID`
signal every process of the job, the DataLoader workers too. torch's worker handler lets only the parent's SIGTERM
end a worker quietly; anyone else's killed it, and the training process then died at its next batch with
"DataLoader worker (pid N) is killed by signal: Terminated": no checkpoint at the step (`core.signals.GracefulStop`
never got to act), the run FAILED instead of KILLED. Workers now ignore SIGTERM: the training process stops them
when it stops (or torch's watchdog does, when it died)."""
from __future__ import annotations

import subprocess

import psutil
import pytest

from mmlnb_dist.data.loader import ShardLoader
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.fusion.steps import preprocess_for

from support.shards import make_shard_set


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shard_set(tmp_path_factory.mktemp("sigterm-loader"), per_class=10, max_per_shard=5)


def test_a_sigterm_from_outside_does_not_kill_the_loader_workers(shards):
    loader = ShardLoader(ShardSet.open(shards), "train", preprocess_for(["UD", "PD", "D"], 16, augment=False),
                         rank=0, world_size=1, batch_size=2, num_workers=2, mode="train", seed=0, shuffle_buffer=4)
    loader.set_epoch(0)
    expected = len(loader)
    batches = iter(loader)
    got = [next(batches)]
    workers = psutil.Process().children()
    assert len(workers) == 2, workers
    for worker in workers:  # sent by another process, as a scheduler's is (`kill`, not the workers' parent)
        subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)
    got.extend(batches)  # raised "DataLoader worker (pid N) is killed by signal: Terminated"
    assert len(got) == expected

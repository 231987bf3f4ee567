"""Loader workers outlive a scheduler's SIGTERM, and still end when their training process ends them.

Slurm (a time limit, `scancel`, `--signal=TERM@120`), Kubernetes and `kill -TERM -PGID` signal every process of the
job, the DataLoader workers too. torch's worker handler lets only the parent's SIGTERM end a worker quietly; anyone
else's killed it, and the training process then died at its next batch with "DataLoader worker (pid N) is killed by
signal: Terminated": no checkpoint at the step (`core.signals.GracefulStop` never got to act), the run FAILED instead
of KILLED. A worker now ignores every SIGTERM but its parent's. The parent's must still work: multiprocessing
terminates and joins live workers when the training process exits (a worker that ignored that one too hung the exit).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from mmlnb_dist.data.loader import ShardLoader
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.fusion.steps import preprocess_for

from support.shards import make_shard_set

@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shard_set(tmp_path_factory.mktemp("sigterm-loader"), per_class=10, max_per_shard=5)


def _loader(shards: Path) -> ShardLoader:
    loader = ShardLoader(ShardSet.open(shards), "train", preprocess_for(["UD", "PD", "D"], 16, augment=False),
                         rank=0, world_size=1, batch_size=2, num_workers=2, mode="train", seed=0, shuffle_buffer=4)
    loader.set_epoch(0)
    return loader


def test_a_sigterm_from_outside_does_not_kill_the_loader_workers(shards):
    loader = _loader(shards)
    expected = len(loader)
    before = {p.pid for p in psutil.Process().children()}  # (another test's loader may not be collected yet)
    batches = iter(loader)
    got = [next(batches)]
    workers = [p for p in psutil.Process().children() if p.pid not in before]
    assert len(workers) == 2, workers
    for worker in workers:  # sent by another process, as a scheduler's is (`kill`, not the workers' parent)
        subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)
    got.extend(batches)  # raised "DataLoader worker (pid N) is killed by signal: Terminated"
    assert len(got) == expected



def _kill_myself_from_outside_first(worker_id: int) -> None:
    """A `worker_init_fn` that, before the real one runs, has another process SIGTERM this worker: the window in
    which a scheduler's signal reached a worker still at its start (the test above failed so under load)."""
    import os

    from mmlnb_dist.data import loader as loader_module

    subprocess.run(["kill", "-TERM", str(os.getpid())], check=True)
    loader_module._real_sigterm_from_parent_only(worker_id)


def test_a_sigterm_before_the_worker_has_started_does_not_kill_it(shards, monkeypatch):
    """Workers are born with SIGTERM blocked (the parent blocks it around their start), so a SIGTERM that arrives
    before `sigterm_from_parent_only` has run waits for it and is then ignored, as any outsider's is."""
    import mmlnb_dist.data.loader as loader_module

    monkeypatch.setattr(loader_module, "_real_sigterm_from_parent_only", loader_module.sigterm_from_parent_only,
                        raising=False)
    monkeypatch.setattr(loader_module, "sigterm_from_parent_only", _kill_myself_from_outside_first)
    loader = _loader(shards)
    assert len(list(loader)) == len(loader)  # raised "DataLoader worker (pid N) is killed by signal: Terminated"


def test_the_parent_gets_a_sigterm_that_came_while_its_workers_started(shards, monkeypatch):
    """The parent blocks SIGTERM only while it starts its workers: one sent then is delivered right after."""
    import signal
    import threading

    import mmlnb_dist.data.loader as loader_module

    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        blocked_before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        class SigtermWhileStartingWorkers(loader_module.DataLoader):
            def __iter__(self):
                # arrives while the parent starts its workers; sent to this thread, which blocks it (a signal to
                # the process goes to any thread that does not, such as one an earlier test left running)
                signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
                assert received == [], "SIGTERM is not blocked while the workers start"
                return super().__iter__()

        monkeypatch.setattr(loader_module, "DataLoader", SigtermWhileStartingWorkers)
        loader = _loader(shards)
        batches = iter(loader)
        next(batches)
        assert received == [signal.SIGTERM]
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == blocked_before
        list(batches)
    finally:
        signal.signal(signal.SIGTERM, previous)


_ABANDON = textwrap.dedent("""
    import psutil
    from mmlnb_dist.data.loader import ShardLoader
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.fusion.steps import preprocess_for
    loader = ShardLoader(ShardSet.open({shards!r}), "train", preprocess_for(["UD", "PD", "D"], 16, augment=False),
                         rank=0, world_size=1, batch_size=2, num_workers=2, mode="train", seed=0, shuffle_buffer=4)
    loader.set_epoch(0)
    batches = iter(loader)
    next(batches)
    print(" ".join(str(p.pid) for p in psutil.Process().children()), flush=True)
    # exits with the iterator (and its workers) alive: multiprocessing terminates the workers and joins them
""")


def test_a_process_that_exits_with_its_loader_workers_alive_still_ends_them(shards):
    done = subprocess.run([sys.executable, "-c", _ABANDON.format(shards=str(shards))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    workers = [int(pid) for pid in done.stdout.split()]
    assert len(workers) == 2, done.stdout
    assert not [pid for pid in workers if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_without_sigwaitinfo_the_worker_keeps_torchs_handler(monkeypatch):
    """macOS and Windows have no `sigwaitinfo`: the worker must still start (it raised AttributeError there)."""
    import signal

    from mmlnb_dist.data.loader import sigterm_from_parent_only

    monkeypatch.delattr(signal, "sigwaitinfo")
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    sigterm_from_parent_only(0)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == blocked

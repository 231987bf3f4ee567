"""The streaming shard loader: rank/worker partitioning, epoch-seeded shuffle, exactly-once evaluation.

How samples are dealt (and why not WebDataset's `split_by_node`/`split_by_worker`): dealing whole shards
gives ranks uneven counts and leaves a rank with nothing when there are fewer shards than ranks x workers,
which hangs DDP (webdataset #188, #225). Instead the manifest's per-shard counts define one global sequence of
the split's samples, and each (rank, worker) *slot* reads a contiguous range of it, skipping into a shard as
needed. So any number of shards works with any number of slots.

- `mode="train"`: the sequence is the shards in an epoch-seeded order, repeated (each repetition re-permuted)
  when `epoch_samples` exceeds the split: that is the resampling.
  `epoch_samples` (global) is split evenly over ranks (`epoch_samples // world_size` each, the remainder
  dropped: other samples each epoch, as each cycle is rotated by a seeded offset),
  and every rank yields the same number of batches of the same sizes, so DDP never waits on a rank
  that ran out. A slot's range is shuffled through a seeded buffer. A bad sample is replaced by reading on past
  the range, so batch counts stay equal.
- `mode="eval"`: slot `s` of `S` reads global indices `[s*N//S, (s+1)*N//S)` in manifest order: every sample
  exactly once across all ranks and workers. Ranks may get counts differing by one slot's share; metrics must be
  gathered from all ranks (sum counts, not average means).

What a sample becomes is the recipe's business: it injects a preprocess object (`data.preprocess`) whose
`decode` runs in the workers, `collate` builds batches there and `finalize` runs once per batch in the main
process. Bad samples (the decode raised ValueError: undecodable image, unknown label; or a position the
manifest promises that a short shard does not hold) are skipped and recorded in `loader.bad_samples` with
shard and key: each worker sends its new ledger entries along with its batches (no side files). The budget is
one global rate per pass (`data.ledger`): `end_epoch()` (every rank, after each epoch and evaluation) gathers
the ledger over ranks, prints it, writes it to the run folder, logs it and raises `BadSampleRateError` above
`max_bad_sample_rate`; a slot whose own count already exceeds it stops at once.
A truncated tar stops the epoch with a `ShardError` naming the shard.

Tars are read with `tarfile` through `reader.iter_shard_samples` rather than `webdataset.WebDataset`: we need
to start and stop inside a shard at exact sample indices, and the whole pipeline is a few generators.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from torch.utils.data import DataLoader

from .config import LoaderConfig
from .ledger import BadSample, BadSampleRateError, exceeds, gather_entries, rate_message, report, summarize
from .position import DataPosition, ResumePlan, eval_ranges, slot_name, train_batch_sizes
from .reader import DEFAULT_MAX_MEMBER_BYTES
from .shardset import ShardError, ShardSet
from .stream import ShardStream

__all__ = ["BadSample", "BadSampleRateError", "DataPosition", "ShardLoader", "build_loader", "eval_ranges",
           "train_batch_sizes"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------------------------
def sigterm_from_parent_only(worker_id: int) -> None:
    """`worker_init_fn`: a loader worker ends on its parent's SIGTERM only. A scheduler signals every process of a
    job (Slurm at its time limit or `--signal`, `scancel`, `kill -TERM -PGID`); torch's worker handler let that
    SIGTERM kill the worker, and the training process crashed at its next batch ("DataLoader worker ... is killed
    by signal: Terminated") before `core.signals.GracefulStop` could checkpoint the step. The parent's SIGTERM
    (multiprocessing ends live workers so when their process exits) must still end it, as torch's handler does.
    A Python handler cannot tell who sent a signal, so SIGTERM is blocked here (threads started later inherit the
    mask) and one thread takes it with `sigwaitinfo`, which names the sender. A worker whose parent is gone ends
    anyway (torch's watchdog ends it too). Where `sigwaitinfo` is missing (macOS, Windows) torch's handler stays.
    The worker is born with SIGTERM blocked (`_workers_born_with_sigterm_blocked`), so one sent before this runs
    waits for the thread instead of reaching torch's handler. A scheduler's warning signal (SIGUSR1/2, Slurm's
    `--signal=USR1@...`, which reaches the workers too) is the parent's to handle: ignored here (its default ended
    the worker, and the run crashed at its next batch)."""
    for warning in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(warning, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):
        return
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait_for_parent() -> None:
        while True:
            sender = signal.sigwaitinfo({signal.SIGTERM}).si_pid
            if sender == parent or os.getppid() != parent:
                os._exit(0)  # as torch's handler does for the parent's SIGTERM

    threading.Thread(target=wait_for_parent, name=f"loader-worker-{worker_id}-sigterm", daemon=True).start()


@contextlib.contextmanager
def _workers_born_with_sigterm_blocked(num_workers: int) -> Iterator[None]:
    """Block SIGTERM in this thread while the DataLoader forks its workers: a child inherits the mask, so a
    scheduler's SIGTERM that reaches a worker before its `worker_init_fn` waits (pending) instead of killing it.
    Under load that window was wide enough to lose a worker (and the run). A SIGTERM to this process in the
    meantime is delivered when the mask is restored, a moment later."""
    if not num_workers or not hasattr(signal, "sigwaitinfo"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class ShardLoader:
    """Iterable over batches of one rank; call `set_epoch(e)` before each epoch (as with DistributedSampler)."""

    def __init__(self, shard_set: ShardSet, split: str, preprocess: Any, *, rank: int, world_size: int,
                 batch_size: int, num_workers: int, mode: str, seed: int, shuffle_buffer: int,
                 epoch_samples: Optional[int] = None, max_bad_sample_rate: float = 0.01,
                 max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.shard_set, self.split, self.mode, self.preprocess = shard_set, split, mode, preprocess
        self.shards = shard_set.shards(split)
        for path, _ in self.shards:
            if not path.is_file():
                raise ShardError(f"shard listed in {shard_set.root / 'manifest.json'} not found: {path}")
        self.split_size = sum(n for _, n in self.shards)
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.num_workers, self.seed = num_workers, seed
        self.shuffle_buffer = shuffle_buffer if mode == "train" else 0
        self.max_bad_sample_rate, self.max_member_bytes = max_bad_sample_rate, max_member_bytes
        self.epoch = 0
        self.bad_samples: List[BadSample] = []
        """The ledger: every skipped sample of every epoch so far, with shard, key and reason."""
        self._reported = 0  # ledger entries already covered by `end_epoch`
        self.consumed: Dict[int, List[int]] = {}
        """Per worker: the positions of the current epoch's batches yielded so far (the data position)."""
        self.consumed_batches: Dict[int, int] = {}
        self._resume: Optional[ResumePlan] = None
        if mode == "train":
            if self.split_size == 0:
                raise ShardError(f"{shard_set.root}: split '{split}' has no samples to train on")
            self.epoch_samples = epoch_samples or self.split_size
            self.per_rank = self.epoch_samples // world_size
            if self.per_rank == 0:
                raise ValueError(f"epoch_samples={self.epoch_samples} is smaller than world_size={world_size}")
        else:
            self.epoch_samples = self.split_size
            self.per_rank = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- the data position (mid-epoch checkpoints) ---------------------------------------------------------------
    def resume_from(self, position: Optional[DataPosition]) -> None:
        """Continue `position.epoch` where a checkpoint left it (None: forget any resume). Applies while the
        loader's epoch is that epoch; training mode only."""
        if position is None:
            self._resume = None
            return
        if self.mode != "train":
            raise ValueError("resume_from: only a training loader has a data position")
        self._resume = ResumePlan.for_rank(position, self.rank, self.world_size, self.num_workers,
                                           self.batch_size)

    def _active_resume(self) -> Optional[ResumePlan]:
        return self._resume if self._resume is not None and self._resume.epoch == self.epoch else None

    def data_position(self) -> Dict[str, Any]:
        """This rank's part of the data position of the current epoch (`DataPosition` fields): per slot
        "rank/worker" the positions (`consumed`) and the number of batches (`batches`) yielded so far, skipped
        batches of a resumed epoch included; `before_redeal` and `epoch_positions` as the epoch stands."""
        resume = self._active_resume()
        redealt = resume is not None and resume.remaining is not None
        return {"consumed": {slot_name(self.rank, w): list(p) for w, p in self.consumed.items()},
                "batches": {slot_name(self.rank, w): n for w, n in self.consumed_batches.items()},
                "before_redeal": list(resume.before or []) if redealt else None,
                "epoch_positions": resume.epoch_positions if resume is not None else self.per_rank * self.world_size}

    def _dataset(self) -> ShardStream:
        return ShardStream(self.shards, self.preprocess, rank=self.rank, world_size=self.world_size,
                            num_workers=self.num_workers, batch_size=self.batch_size, mode=self.mode,
                            seed=self.seed, epoch=self.epoch, per_rank=self.per_rank,
                            shuffle_buffer=self.shuffle_buffer, max_bad_sample_rate=self.max_bad_sample_rate,
                            planned=self.planned, max_member_bytes=self.max_member_bytes,
                            remaining=resume.remaining if (resume := self._active_resume()) else None,
                            skip=resume.skip if resume else None, expect=resume.expect if resume else None)

    @property
    def planned(self) -> int:
        """Positions one pass reads over the whole job (all ranks): the budget's denominator."""
        return self.per_rank * self.world_size if self.mode == "train" else self.split_size

    def _yielded_batch_sizes(self) -> List[int]:
        """The sizes of the batches this rank yields in this epoch: a same-layout resume replays (and does not
        yield) each slot's first `skip` batches, trained on before the checkpoint."""
        ds = self._dataset()
        resume = self._active_resume()
        skip = resume.skip if resume is not None and resume.skip else {}
        return [n for w in range(ds.num_workers) for n in ds.plan(w)[1][skip.get(w, 0):]]

    @property
    def num_samples(self) -> int:
        """Samples this rank yields in this epoch (eval: before skipping bad samples; a resumed epoch: its rest)."""
        return sum(self._yielded_batch_sizes())

    def __len__(self) -> int:
        """Batches this rank yields in this epoch (train: the same on every rank)."""
        return len(self._yielded_batch_sizes())

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        # A fresh DataLoader per epoch: workers receive a copy of the dataset with the current epoch, so the
        # epoch-seeded order cannot go stale in long-lived workers (the detshuffle problem).
        dataset = self._dataset()
        loader = DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                            prefetch_factor=4 if self.num_workers else None,
                            worker_init_fn=sigterm_from_parent_only if self.num_workers else None)
        with _workers_born_with_sigterm_blocked(self.num_workers):
            batches = iter(loader)  # forks the workers
        counted: List[BadSample] = []
        resume = self._active_resume()
        skip = dict(resume.skip) if resume is not None and resume.skip else {}
        self.consumed, self.consumed_batches = {}, {}
        for item in batches:
            new = [BadSample(**b) for b in item["_bad"]]
            counted.extend(b for b in new if not b.replacement)
            self.bad_samples.extend(new)
            if item.get("_end"):
                continue
            worker = int(item.get("_worker", 0))
            self.consumed.setdefault(worker, []).extend(item.get("_pos", []))
            self.consumed_batches[worker] = self.consumed_batches.get(worker, 0) + 1
            if self.consumed_batches[worker] <= skip.get(worker, 0):  # trained on before the checkpoint
                if self.consumed_batches[worker] == skip[worker]:
                    self._check_replay(resume, worker)
                continue
            yield self.preprocess.finalize({k: v for k, v in item.items() if not k.startswith("_")})
        # This rank's count over the global plan: a lower bound of the global rate (`end_epoch` has the whole).
        if exceeds(len(counted), self.planned, self.max_bad_sample_rate):
            raise BadSampleRateError(rate_message(counted, self.planned, self.max_bad_sample_rate))

    def _check_replay(self, resume: ResumePlan, worker: int) -> None:
        # The skipped batches must hold what the checkpointed run trained on; anything else means the epoch's
        # order is not reproducible (other shards under the same manifest?) and "exactly the remaining batches"
        # would be false.
        expected = resume.expect.get(worker, []) if resume.expect else []
        if self.consumed[worker] != expected:
            raise ShardError(f"resuming epoch {self.epoch} of split '{self.split}' mid-way: rank {self.rank} worker "
                             f"{worker} re-read other samples than the checkpoint recorded; were the shards under "
                             f"{self.shard_set.root} changed? Resume from an epoch checkpoint or start a new run.")

    def ledger_summary(self) -> Dict[str, Any]:
        """The ledger of the pass(es) since the last `end_epoch`, over ALL ranks: `bad` (counted), `planned`,
        `rate`, `limit`, `by_shard`, `entries`. Collective when a process group is up: call it on every rank."""
        entries = gather_entries(self.bad_samples[self._reported:], self.world_size)
        return summarize(entries, split=self.split, epoch=self.epoch, planned=self.planned,
                         limit=self.max_bad_sample_rate)

    def end_epoch(self, run_dir: Optional[Path] = None, logger: Any = None,
                  step: Optional[int] = None) -> Dict[str, Any]:
        """Close a pass (an epoch or an evaluation; collective): print its ledger, append it to
        `<run_dir>/bad_samples.jsonl`, log `data/bad_samples/<split>` (+ the file) and raise
        `BadSampleRateError` when the global rate exceeds the budget. Returns `ledger_summary()`."""
        summary = self.ledger_summary()
        self._reported = len(self.bad_samples)
        report(summary, is_main=self.rank == 0, run_dir=run_dir, logger=logger, step=step)
        if exceeds(summary["bad"], summary["planned"], summary["limit"]):
            counted = [BadSample(**e) for e in summary["entries"] if not e["replacement"]]
            raise BadSampleRateError(rate_message(counted, summary["planned"], summary["limit"],
                                                  where=f"split '{self.split}', epoch {self.epoch}: "))
        return summary

    def bad_sample_report(self) -> str:
        """The ledger as a table: epoch, shard, key, reason."""
        if not self.bad_samples:
            return "no bad samples"
        return "\n".join(f"epoch {b.epoch}  {b.shard}  {b.key}  {b.reason}" for b in self.bad_samples)


def build_loader(shard_set: ShardSet, split: str, preprocess: Any, loader: LoaderConfig, *, rank: int,
                 world_size: int, batch_size: int, mode: str, seed: int) -> ShardLoader:
    """The loader of one rank over one split, with the `data.loader` settings (epoch size for training only)."""
    return ShardLoader(shard_set, split, preprocess, rank=rank, world_size=world_size, batch_size=batch_size,
                       num_workers=loader.num_workers, mode=mode, seed=seed, shuffle_buffer=loader.shuffle_buffer,
                       epoch_samples=loader.epoch_samples if mode == "train" else None,
                       max_bad_sample_rate=loader.max_bad_sample_rate, max_member_bytes=loader.max_member_bytes)

"""One (rank, worker) slot's stream of batches: the part of `data.loader` that runs in the DataLoader workers.

It reads its global positions (planned in `data.position`) from the shards, shuffles raw bytes through a seeded
buffer, decodes with the recipe's preprocess, replaces bad samples by reading on and sends each batch with its
positions and new ledger entries. How samples are dealt and why: `data.loader`.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from .ledger import BadSample, BadSampleRateError, exceeds, rate_message
from .position import eval_ranges, redeal_slot, sequence_segments, train_batch_sizes
from .preprocess import SampleContext
from .reader import DEFAULT_MAX_MEMBER_BYTES, iter_shard_samples

__all__ = ["ShardStream"]

log = logging.getLogger(__name__)


class ShardStream(IterableDataset):
    """Yields this worker's batches (dicts), each carrying the ledger entries found since the previous one.

    A final message with `_end=True` and no samples carries the last ledger entries.
    """

    def __init__(self, shards: List[Tuple[Path, int]], preprocess: Any, *, rank: int, world_size: int,
                 num_workers: int, batch_size: int, mode: str, seed: int, epoch: int, per_rank: int,
                 shuffle_buffer: int, max_bad_sample_rate: float, planned: int,
                 max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES, remaining: Optional[List[int]] = None,
                 skip: Optional[Dict[int, int]] = None, expect: Optional[Dict[int, List[int]]] = None) -> None:
        self.shards, self.preprocess = shards, preprocess
        self.rank, self.world_size, self.num_workers = rank, world_size, max(1, num_workers)
        self.batch_size, self.mode, self.seed, self.epoch = batch_size, mode, seed, epoch
        self.per_rank = per_rank
        self.context = SampleContext(seed, epoch, mode == "train")
        self.shuffle_buffer, self.max_bad_sample_rate = shuffle_buffer, max_bad_sample_rate
        self.planned, self.max_member_bytes = planned, max_member_bytes
        self.remaining = remaining
        """Set when a resumed epoch deals its unconsumed positions anew (`data.position`)."""
        self.skip, self.expect = skip or {}, expect or {}
        """Same-layout resume: per worker, the batches trained on before the checkpoint and their positions."""
        self._said_extra: set = set()
        """Shards already said to hold more samples than their manifest entry (`_say_extra_samples`)."""

    # -- planning for this worker --------------------------------------------------------------------------------
    def plan(self, worker: int) -> Tuple[int, List[int], Optional[int]]:
        """(first global position, batch sizes, end position or None) of slot (rank, worker)."""
        counts = [n for _, n in self.shards]
        if self.mode == "eval":
            a, b = eval_ranges(sum(counts), self.world_size * self.num_workers)[self.rank * self.num_workers + worker]
            return a, train_batch_sizes(b - a, self.batch_size), b
        if self.remaining is not None:
            own, sizes = redeal_slot(self.remaining, self.rank, self.world_size, self.num_workers,
                                     self.batch_size, worker)
            return (own[0] if own else 0), sizes, None
        sizes = train_batch_sizes(self.per_rank, self.batch_size)
        mine = sizes[worker::self.num_workers]
        before = sum(sum(sizes[w::self.num_workers]) for w in range(worker))
        return self.rank * self.per_rank + before, mine, None

    # -- raw samples -------------------------------------------------------------------------------------------------
    def _read(self, start: int, stop: Optional[int]) -> Iterator[Dict[str, Any]]:
        """Raw samples at global positions [start, stop) (stop None: endless, train only)."""
        counts = [n for _, n in self.shards]
        remaining = None if stop is None else stop - start
        position = start  # each sample carries its global position: the data position of a checkpoint
        for j, first, end in sequence_segments(counts, start, self.seed, self.epoch, self.mode == "train"):
            take = end - first if remaining is None else min(end - first, remaining)
            path = self.shards[j][0]
            got = 0
            # read to the shard's end: one sample more than the manifest's count, to see a shard that holds more
            # (written or replaced after its manifest entry; with data.loader.preflight=off nothing else would)
            past = 1 if first + take == counts[j] else 0
            samples = iter_shard_samples(path, self.max_member_bytes)
            for sample in itertools.islice(samples, first, first + take + past):
                if got == take:  # one past the count: the rest of this same read says how many more
                    if path not in self._said_extra:
                        self._say_extra_samples(path, counts[j], 1 + sum(1 for _ in samples))
                    break
                got += 1
                yield {**sample, "__pos__": position}
                position += 1
            if got < take:  # the shard ended early (a tar cut between two samples): bad data, not the end
                held = sum(1 for _ in iter_shard_samples(path, self.max_member_bytes))
                reason = f"missing: shard ended after {held} of {counts[j]} samples (truncated?)"
                for index in range(first + got, first + take):
                    yield {"__key__": f"#{index}", "__shard__": path.name, "__missing__": reason,
                           "__pos__": position}
                    position += 1
            if remaining is not None:
                remaining -= take
                if remaining <= 0:
                    return

    def _say_extra_samples(self, path: Path, listed: int, extra: int) -> None:
        """Warn (once per shard and process) that `path` holds `extra` samples its manifest entry does not count:
        they are not read, so the split is smaller than the shard files."""
        self._said_extra.add(path)
        held = listed + extra
        log.warning("%s holds %d samples, its manifest entry says %d: the %d extra are not read (the shard was "
                    "changed after the manifest was written; `mmlnb-dist shards verify %s`, then rebuild it)",
                    path, held, listed, held - listed, path.parent)

    def _shuffled(self, samples: Iterator[Dict[str, Any]], rng: np.random.Generator) -> Iterator[Dict[str, Any]]:
        """Seeded buffer shuffle (raw bytes are buffered: decoding happens after)."""
        buf: List[Dict[str, Any]] = []
        for s in samples:
            if len(buf) < self.shuffle_buffer:
                buf.append(s)
                continue
            i = int(rng.integers(len(buf)))
            buf[i], s = s, buf[i]
            yield s
        rng.shuffle(buf)  # type: ignore[arg-type]
        yield from buf

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        start, sizes, stop = self.plan(worker)
        need = sum(sizes)
        if self.mode == "train" and need:
            if self.remaining is not None:  # a resumed epoch dealt anew: this slot's unconsumed positions
                rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, 2])
                mine = redeal_slot(self.remaining, self.rank, self.world_size, self.num_workers,
                                   self.batch_size, worker)[0]
                own = self._read_positions(mine)
                start = mine[-1] + 1 - need  # replacements: just past the slot's last position
            else:
                rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, 1])
                own = self._read(start, start + need)
            raw = self._shuffled(own, rng) if self.shuffle_buffer > 0 else own
            # Replacements for bad samples come from just past this slot's range (owned by another slot or
            # past the epoch: recorded, not counted, see data.ledger).
            raw = itertools.chain(raw, ({**s, "__replacement__": True} for s in self._read(start + need, None)))
        else:
            raw = self._read(start, stop) if need else iter(())
        bad: List[BadSample] = []
        pending: List[Dict[str, str]] = []
        read = 0
        batch: List[Dict[str, Any]] = []
        positions: List[int] = []
        sizes_left = list(sizes)
        # A same-layout resume drops this slot's first batches (trained on before the checkpoint). Their samples
        # are read but not decoded; the others in that stretch are, so bad samples come back into the ledger and
        # changed data reaches the loader's replay check.
        skip_left = self.skip.get(worker, 0)
        trained = set(self.expect.get(worker, [])) if skip_left else set()
        for sample in raw:
            if not sizes_left:
                break
            read += 1
            if skip_left and sample["__pos__"] in trained and "__missing__" not in sample:
                batch.append(None)
                positions.append(int(sample["__pos__"]))
            else:
                try:
                    if "__missing__" in sample:
                        raise ValueError(sample["__missing__"])
                    batch.append(self.preprocess.decode(sample, self.context))
                    positions.append(int(sample["__pos__"]))
                except ValueError as err:
                    entry = BadSample(sample["__shard__"], sample["__key__"], str(err), self.epoch,
                                      replacement=bool(sample.get("__replacement__")))
                    bad.append(entry)
                    pending.append(asdict(entry))
                    self._check_rate(bad, need)
                    continue
            if len(batch) == sizes_left[0]:
                sizes_left.pop(0)
                if skip_left:
                    skip_left -= 1
                    yield {"_bad": pending, "_read": read, "_pos": positions, "_worker": worker}
                else:
                    yield {**self._collate(batch, pending, read), "_pos": positions, "_worker": worker}
                batch, pending, read, positions = [], [], 0, []
        if batch:  # eval: bad samples left the last batch short
            yield {**self._collate(batch, pending, read), "_pos": positions, "_worker": worker}
            pending, read = [], 0
        yield {"_end": True, "_bad": pending, "_read": read}

    def _read_positions(self, positions: List[int]) -> Iterator[Dict[str, Any]]:
        """Raw samples at the given global positions (ascending): one pass over their span, so a shard is opened
        once rather than once per gap."""
        if not positions:
            return
        wanted = set(positions)
        for sample in self._read(positions[0], positions[-1] + 1):
            if sample["__pos__"] in wanted:
                yield sample

    def _check_rate(self, bad: List[BadSample], need: int) -> None:
        # This slot's counted entries alone are a lower bound of the pass's global count, and the denominator
        # (positions planned) is global and fixed: once they exceed the budget the pass cannot end below it.
        # The second condition stops endless replacement on a set with no readable sample (rate limit 1).
        counted = [b for b in bad if not b.replacement]
        if exceeds(len(counted), self.planned, self.max_bad_sample_rate) or len(bad) > 100 * (need + 1):
            raise BadSampleRateError(rate_message(counted or bad, self.planned, self.max_bad_sample_rate))

    def _collate(self, batch: List[Dict[str, Any]], bad: List[Dict[str, str]], read: int) -> Dict[str, Any]:
        return {**self.preprocess.collate(batch), "_bad": bad, "_read": read}

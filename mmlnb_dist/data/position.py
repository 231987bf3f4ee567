"""The data position of a training epoch: which samples each (rank, worker) slot has consumed, and how a resumed
run continues from it (the same slots skip what they consumed, or the rest of the epoch is dealt anew).

A training epoch is one global sequence of positions `0 .. epoch_positions-1` (see `data.loader`): slot
(rank r, worker w) reads a share of rank r's range and yields it as batches. A mid-epoch checkpoint records, per
slot, the positions it has yielded and how many batches that was. On resume:

- same world size, workers and micro batch: every slot re-reads its range exactly as before and drops its first
  `batches` batches (a bad sample changes which raw samples make a batch, so counting batches is the only exact
  skip). The samples those batches held are read but not decoded again; the others in that stretch (the bad ones)
  are, so the ledger gets them back. The remaining batches are then the ones an uninterrupted run trains.
- anything else (2 processes -> 1, 1 -> 2, other workers): the epoch's positions not consumed, in sequence
  order, are dealt anew: rank r gets the r-th contiguous `len(rest) // world_size` of them, split over its
  workers by batch as a fresh epoch is. Every position of the epoch is trained on at most once; the
  `len(rest) % world_size` left over are dropped (as a fresh epoch drops its remainder) and reported.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DataPosition", "ResumePlan", "eval_ranges", "redeal_slot", "sequence_segments", "slot_name",
           "train_batch_sizes"]


def train_batch_sizes(per_rank: int, batch_size: int) -> List[int]:
    """Batch sizes of one rank's training epoch: full batches, then one smaller batch for the remainder."""
    full, rest = divmod(per_rank, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def eval_ranges(total: int, num_slots: int) -> List[Tuple[int, int]]:
    """Contiguous global index range `[a, b)` of each slot; together they cover `range(total)` exactly once."""
    return [(s * total // num_slots, (s + 1) * total // num_slots) for s in range(num_slots)]


def sequence_segments(counts: Sequence[int], start: int, seed: int, epoch: int, shuffle: bool) -> Iterator[Tuple[int, int, int]]:
    """`(shard_index, first, end)` pieces of the global sequence from position `start` onward (endless).

    Without shuffle the sequence is the shards in manifest order (once around: callers stop at the split's end).
    With shuffle it is cycle after cycle of shard permutations seeded by (seed, epoch, cycle), each cycle rotated
    by a seeded number of samples (its first shard may then be read in two pieces, its tail first and its head
    last). Without the rotation the positions an epoch drops (the `epoch_samples % world_size` past the last rank)
    were always the tail of some shard, and of a one-shard split the same samples: never trained in any epoch.
    """
    # No random start offset: a window of one split's length starting at 0 then covers each sample once (a
    # rotation of one cycle still does).
    cycle, within = divmod(start, sum(counts))
    while True:
        if shuffle:
            rng = np.random.default_rng([seed, epoch, cycle])
            pieces = _rotated([(int(j), 0, counts[j]) for j in rng.permutation(len(counts))],
                              int(rng.integers(sum(counts))))
        else:
            pieces = [(j, 0, n) for j, n in enumerate(counts)]
        cum = 0
        for j, first, end in pieces:
            n = end - first
            if within < cum + n:
                yield j, first + max(0, within - cum), end
            cum += n
        cycle, within = cycle + 1, 0


def _rotated(pieces: List[Tuple[int, int, int]], offset: int) -> List[Tuple[int, int, int]]:
    """The pieces laid end to end, starting `offset` samples in (the piece holding it split in two)."""
    cum = 0
    for i, (j, first, end) in enumerate(pieces):
        if offset < cum + end - first:
            cut = first + offset - cum
            head = [(j, first, cut)] if cut > first else []
            return [(j, cut, end)] + pieces[i + 1:] + pieces[:i] + head
        cum += end - first
    return pieces


def slot_name(rank: int, worker: int) -> str:
    return f"{rank}/{worker}"


@dataclass
class DataPosition:
    """Where a training epoch stood when a mid-epoch checkpoint was written (the client state's `data_position`)."""

    epoch: int
    step_in_epoch: int
    """Optimizer steps of this epoch already taken."""
    world_size: int
    num_workers: int
    micro_batch: int
    accumulation: int
    epoch_positions: int
    """Positions the epoch deals over all ranks (per rank x world size)."""
    consumed: Dict[str, List[int]] = field(default_factory=dict)
    """Per slot "rank/worker": the global positions it yielded, in order (replacements of bad samples included)."""
    batches: Dict[str, int] = field(default_factory=dict)
    """Per slot: the batches it yielded."""
    before_redeal: Optional[List[int]] = None
    """When this epoch was already dealt anew by an earlier resume: the positions consumed before that deal
    (the slots above read the rest, `deal_base()`); None for an epoch in its first deal."""

    def to_state(self) -> Dict[str, Any]:
        # next_epoch is the epoch to (re)enter; the granularity says it is entered part-way.
        return {"granularity": "step", "next_epoch": self.epoch, **asdict(self)}

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "DataPosition":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in state.items() if k in names})

    def same_layout(self, world_size: int, num_workers: int, micro_batch: int) -> bool:
        return (self.world_size, max(1, self.num_workers), self.micro_batch) == \
            (world_size, max(1, num_workers), micro_batch)

    def consumed_positions(self) -> set:
        """Every position the epoch has consumed so far, in this deal and earlier ones."""
        return {p for positions in self.consumed.values() for p in positions} | set(self.before_redeal or ())

    def remaining(self) -> List[int]:
        """The epoch's positions no slot has consumed, in sequence order."""
        done = self.consumed_positions()
        return [p for p in range(self.epoch_positions) if p not in done]

    def deal_base(self) -> Optional[List[int]]:
        """The positions the current deal reads (None: the epoch's own order, never dealt anew)."""
        if self.before_redeal is None:
            return None
        done = set(self.before_redeal)
        return [p for p in range(self.epoch_positions) if p not in done]


@dataclass
class ResumePlan:
    """How one rank's loader continues the epoch `epoch` (see the module docstring)."""

    epoch: int
    skip: Optional[Dict[int, int]] = None
    """Same layout: per worker, the batches to read again and drop."""
    expect: Optional[Dict[int, List[int]]] = None
    """Same layout: per worker, the positions those dropped batches held when first read (checked)."""
    remaining: Optional[List[int]] = None
    """The positions dealt anew over the ranks (other layout: the unconsumed ones; same layout as an earlier
    re-deal: that deal's positions again). None: the epoch's own order."""
    before: Optional[List[int]] = None
    """With `remaining`: the positions consumed before that deal (a later checkpoint records them)."""
    epoch_positions: int = 0

    @classmethod
    def for_rank(cls, position: DataPosition, rank: int, world_size: int, num_workers: int,
                 batch_size: int) -> "ResumePlan":
        if position.same_layout(world_size, num_workers, batch_size):
            workers = range(max(1, num_workers))
            return cls(position.epoch,
                       skip={w: int(position.batches.get(slot_name(rank, w), 0)) for w in workers},
                       expect={w: list(position.consumed.get(slot_name(rank, w), [])) for w in workers},
                       remaining=position.deal_base(), before=position.before_redeal,
                       epoch_positions=position.epoch_positions)
        return cls(position.epoch, remaining=position.remaining(), before=sorted(position.consumed_positions()),
                   epoch_positions=position.epoch_positions)


def redeal_slot(remaining: List[int], rank: int, world_size: int, num_workers: int, batch_size: int,
                worker: int) -> Tuple[List[int], List[int]]:
    """(positions, batch sizes) of slot (rank, worker) when the rest of an epoch is dealt anew."""
    per_rank = len(remaining) // world_size
    mine = remaining[rank * per_rank:(rank + 1) * per_rank]
    workers = max(1, num_workers)
    sizes = train_batch_sizes(per_rank, batch_size)
    before = sum(sum(sizes[w::workers]) for w in range(worker))
    own = sizes[worker::workers]
    return mine[before:before + sum(own)], own

"""The bad-sample ledger and its one global budget.

Every sample the loader could not use is an entry: an undecodable image, an invalid label, or a position the
manifest promises but the shard does not hold (a tar cut cleanly between two samples ends early; each missing
position is an entry keyed `#<index in shard>`). Entries carry the shard, key, reason and epoch.

The budget (`data.loader.max_bad_sample_rate`) is ONE rate per epoch or evaluation pass over the whole job:

    rate = bad positions of the pass, summed over all ranks and workers / positions the pass planned

Positions planned: eval, the split's size; train, `per_rank x world_size`. Both are fixed by the plan, and every
planned position is read by exactly one (rank, worker) slot, so the rate, and the decision, do not depend on
the number of workers or how the positions are dealt. A training slot reads replacements for its bad samples
past its own range; a bad replacement is recorded (`replacement=True`) but not counted, because the slot that
owns that position counts it (or it lies past the epoch). A slot stops early as soon as its own count alone
exceeds the budget: a lower bound of the global rate, so it never stops a pass the global rule would pass.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .shardset import ShardError

log = logging.getLogger(__name__)

LEDGER_FILE = "bad_samples.jsonl"


class BadSampleRateError(ShardError):
    """Too many bad samples in one pass; the message names the shard with the most of them and the first keys."""


@dataclass(frozen=True)
class BadSample:
    """One skipped sample in the ledger."""

    shard: str
    key: str
    reason: str
    epoch: int
    replacement: bool = False
    """Read as a replacement past the slot's own range: listed, not counted (its owner counts it)."""


def rate_message(bad: Sequence[BadSample], planned: int, limit: float, where: str = "") -> str:
    worst, n = Counter(b.shard for b in bad).most_common(1)[0]
    examples = "; ".join(f"{b.shard} key {b.key}: {b.reason}" for b in list(bad)[:3])
    return (f"{where}{len(bad)} bad samples of {planned} ({len(bad) / max(planned, 1):.1%} > "
            f"data.loader.max_bad_sample_rate={limit}); most in shard {worst} ({n}). First: {examples}. "
            f"`mmlnb-dist shards verify` lists every problem of a shard set")


def exceeds(bad: int, planned: int, limit: float) -> bool:
    return bad > 0 and bad / max(planned, 1) > limit


def gather_entries(entries: List[BadSample], world_size: int) -> List[BadSample]:
    """Every rank's entries (rank order) when a process group of `world_size` is up; this rank's otherwise.
    Collective in the first case: every rank must call it."""
    import torch.distributed as dist

    if world_size > 1 and dist.is_available() and dist.is_initialized() and dist.get_world_size() == world_size:
        parts: List[Any] = [None] * world_size
        dist.all_gather_object(parts, [asdict(b) for b in entries])
        return [BadSample(**b) for part in parts for b in part]
    return list(entries)


def summarize(entries: Sequence[BadSample], *, split: str, epoch: int, planned: int, limit: float) -> Dict[str, Any]:
    counted = [b for b in entries if not b.replacement]
    return {"split": split, "epoch": epoch, "bad": len(counted), "planned": planned,
            "rate": len(counted) / max(planned, 1), "limit": limit,
            "by_shard": dict(Counter(b.shard for b in counted)), "entries": [asdict(b) for b in entries]}


def report(summary: Dict[str, Any], *, is_main: bool, run_dir: Optional[Path], logger: Any,
           step: Optional[int]) -> None:
    """Print the pass's ledger, append it to `<run_dir>/bad_samples.jsonl` and log it (rank 0)."""
    if not is_main:
        return
    split, bad = summary["split"], summary["bad"]
    if summary["entries"]:
        lines = "\n".join(f"  {e['shard']}  {e['key']}  {e['reason']}" + ("  (replacement)" if e["replacement"] else "")
                          for e in summary["entries"][:50])
        more = f"\n  ... {len(summary['entries']) - 50} more" if len(summary["entries"]) > 50 else ""
        log.info("bad samples, %s epoch %d: %d of %d (%.2f%%, budget %.2f%%)\n%s%s", split, summary["epoch"], bad,
                 summary["planned"], 100 * summary["rate"], 100 * summary["limit"], lines, more)
    path = None
    if run_dir is not None and summary["entries"]:
        path = Path(run_dir) / LEDGER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            for e in summary["entries"]:
                f.write(json.dumps({"split": split, **e}) + "\n")
    if logger is not None:
        logger.log_metrics({f"data/bad_samples/{split}": float(bad), f"data/bad_sample_rate/{split}": summary["rate"]},
                           step=step if step is not None else summary["epoch"])
        if path is not None:
            logger.log_artifact(path)

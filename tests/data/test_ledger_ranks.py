"""The bad-sample budget across ranks: two gloo processes each see part of the ledger; `end_epoch` gives both
the global count and the same decision."""
from __future__ import annotations

import json

import pytest

from support.ranks import run_ranks


RANK = """
import json, os, sys
import torch.distributed as dist
from mmlnb_dist.data.loader import BadSampleRateError, ShardLoader
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.fusion.steps import preprocess_for

rank, shards, limit, out = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
dist.init_process_group("gloo", rank=rank, world_size=2)
ld = ShardLoader(ShardSet.open(shards), "train", preprocess_for(["UD", "PD", "D"], 16, False), rank=rank,
                 world_size=2, batch_size=4, num_workers=0, mode="eval", seed=0, shuffle_buffer=0,
                 max_bad_sample_rate=limit)
list(ld)
try:
    result = ["ok", ld.end_epoch(None, None)["bad"], len(ld.bad_samples)]
except BadSampleRateError as err:
    result = ["refused", str(err), len(ld.bad_samples)]
open(out, "w").write(json.dumps(result))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_end_epoch_counts_every_rank_and_decides_the_same_everywhere(tmp_path):
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.writer import write_tar_shard

    from support.shards import CLASSES, make_shard_set

    shards = make_shard_set(tmp_path, per_class=20, max_per_shard=10, val_fraction=0.0)
    for name in ("train-000000.tar", "train-000005.tar"):  # one bad sample in each rank's half
        samples = list(iter_shard_samples(shards / name))
        samples[2]["png"] = b"garbage"
        write_tar_shard(shards / name, samples, CLASSES)
    for limit, expected in ((0.04, "ok"), (0.03, "refused")):  # 2 of 60 = 3.3%; each rank alone: 1 of 60
        outs = [tmp_path / f"rank{r}-{limit}.json" for r in range(2)]
        run_ranks(RANK, lambda r: (shards, limit, outs[r]))
        got = [json.loads(o.read_text()) for o in outs]
        assert [g[0] for g in got] == [expected, expected], got
        assert [g[2] for g in got] == [1, 1]  # each rank saw only its own bad sample
        if expected == "ok":
            assert got[0][1] == got[1][1] == 2

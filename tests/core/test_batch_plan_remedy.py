"""A global batch the world size does not divide is refused with a remedy that works. The refusal said "set
distributed.micro_batch_per_gpu or change the global batch", but no micro batch can help: global = micro x
accumulation x world, so the world size must divide the global batch whatever the micro batch (global batch 30 on 4
processes, micro batch 1: "not a multiple of micro batch 1 x world size 4"). It now names the global batches near
the one given that this world size divides, and the process counts that divide the given one; each is checked here
to plan."""
from __future__ import annotations

import re

import pytest

from mmlnb_dist.core.distributed import plan_batch
from mmlnb_dist.core.errors import ConfigError


@pytest.mark.parametrize("global_batch, world, key, micro_key", [
    (30, 4, "train.global_batch_size", "distributed.micro_batch_per_gpu"),
    (8, 3, "train.global_batch_size", "distributed.micro_batch_per_gpu"),
    (4, 8, "vlm.global_batch_size", "vlm.micro_batch_per_gpu"),  # fewer samples than processes
])
def test_the_refusal_offers_only_remedies_that_plan(global_batch, world, key, micro_key):
    with pytest.raises(ConfigError) as caught:
        plan_batch(global_batch, world, None, key=key, micro_key=micro_key)
    message = str(caught.value)
    assert message.startswith(f"{key}: global batch {global_batch} is not divisible by world size {world}"), message
    # every micro batch fails too: the message must not send the user there
    for micro in range(1, global_batch + 1):
        with pytest.raises(ConfigError):
            plan_batch(global_batch, world, micro, key=key, micro_key=micro_key)
    assert micro_key not in message, message
    batches = [int(b) for b in re.search(r"set \S+ to (\d+(?: or \d+)?)", message).group(1).split(" or ")]
    assert batches and all(plan_batch(b, world, None).global_batch == b for b in batches), message
    assert min(abs(b - global_batch) for b in batches) < world  # the nearest ones
    processes = [int(p) for p in re.search(r"on (\d+(?:, \d+)*) processes", message).group(1).split(", ")]
    assert processes and all(plan_batch(global_batch, p, None).world_size == p for p in processes), message


def test_a_micro_batch_that_does_not_divide_a_ranks_share_is_refused_with_ones_that_do():
    with pytest.raises(ConfigError) as caught:
        plan_batch(32, 4, 3, key="vlm.global_batch_size", micro_key="vlm.micro_batch_per_gpu")
    message = str(caught.value)
    assert "not a multiple of micro batch 3 x world size 4 = 12" in message, message
    micros = [int(m) for m in re.search(r"set vlm.micro_batch_per_gpu to (\d+(?:, \d+)*)", message).group(1)
              .split(", ")]
    assert micros == [1, 2, 4, 8], message
    assert all(plan_batch(32, 4, m).micro_batch == m for m in micros)

"""`distributed.offload_optimizer=true` below ZeRO stage 2 and `distributed.offload_params=true` below stage 3 were
dropped from the DeepSpeed config without a word (the run kept everything on the GPU the user meant to spare). They
stay valid (a search space may sample them apart from the stage), but loading such a config logs one warning naming
the key and the stage it needs."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.config import load_config


@pytest.mark.parametrize("overrides, says", [
    (["distributed.zero_stage=1", "distributed.offload_optimizer=true"],
     ["distributed.offload_optimizer=true needs distributed.zero_stage 2 or 3 (this config has 1)"]),
    (["distributed.zero_stage=2", "distributed.offload_params=true"],
     ["distributed.offload_params=true needs distributed.zero_stage 3 (this config has 2)"]),
    (["distributed.offload_optimizer=true", "distributed.offload_params=true"],
     ["distributed.offload_optimizer=true needs distributed.zero_stage 2 or 3 (this config has 0)",
      "distributed.offload_params=true needs distributed.zero_stage 3 (this config has 0)"]),
])
def test_an_offload_below_its_stage_is_warned_once(overrides, says, caplog):
    with caplog.at_level(logging.WARNING):
        cfg = load_config("cpu-demo", overrides)
    warned = [r.getMessage() for r in caplog.records if "offload" in r.getMessage()]
    assert len(warned) == 1, warned
    assert all(s in warned[0] for s in says) and "ignored" in warned[0], warned
    assert cfg.distributed.offload_optimizer or cfg.distributed.offload_params  # kept, not refused


@pytest.mark.parametrize("overrides", [
    [],
    ["distributed.zero_stage=2", "distributed.offload_optimizer=true"],
    ["distributed.zero_stage=3", "distributed.offload_optimizer=true", "distributed.offload_params=true"],
])
def test_an_offload_its_stage_takes_is_not_warned(overrides, caplog):
    with caplog.at_level(logging.WARNING):
        load_config("cpu-demo", overrides)
    assert not [r for r in caplog.records if "offload" in r.getMessage()]

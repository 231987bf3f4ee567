"""A checkpoint whose conversion to DeepSpeed's universal format fails: the error said the processes of the run
resuming but not those the checkpoint was saved with ("its layout.json says how many"), so the user had to open the
file to learn how to resume. It now names both, and the count to resume on."""
from __future__ import annotations

import json
import logging

import pytest


def test_a_failed_conversion_names_the_saved_and_the_resuming_world_size(tmp_path, caplog):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.core.reshard import Layout, ReshardError, convert_to_universal, write_layout

    tag = tmp_path / "step-000006"
    tag.mkdir()
    write_layout(tag, Layout(world_size=2, zero_stage=1, micro_batch=2, accumulation=1, precision="fp32"))
    for rank in range(2):
        (tag / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.ERROR), pytest.raises(ReshardError) as err:
        convert_to_universal(tmp_path, "step-000006", DistEnv())
    message = str(err.value)
    assert "saved on 2 processes" in message and "for 1 processes" in message, message
    assert "resume on 2 processes" in message, message
    assert json.loads((tag / "layout.json").read_text())["world_size"] == 2

"""A full disk while a checkpoint is converted for another number of processes (the universal checkpoint holds the
fp32 weights and both Adam moments of every parameter: several times the model). The refusal said the checkpoint
"could not be re-partitioned" and to resume on the number of processes it was saved with, sending the user to
another machine for a problem of space. It now says the disk is full, names the folder and the space left there,
and keeps the remedy of resuming on the saved number of processes as the way that needs no conversion."""
from __future__ import annotations

import errno
import json

import pytest

from mmlnb_dist.core import reshard
from mmlnb_dist.core.checkpoint import PARTIAL
from mmlnb_dist.core.distributed import DistEnv


TORCH_WRITER = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), TORCH_WRITER])
def test_a_full_disk_during_the_conversion_is_said_as_such(tmp_path, monkeypatch, failure):
    tag = tmp_path / "epoch-0003"
    tag.mkdir()
    (tag / reshard.LAYOUT).write_text(json.dumps({"world_size": 2, "zero_stage": 2, "micro_batch": 4,
                                                  "accumulation": 1, "precision": "fp32"}))

    def fills_the_disk(src, out):
        out.mkdir()
        (out / "half").write_bytes(b"part of a universal checkpoint")
        raise failure

    monkeypatch.setattr(reshard, "_run_ds_to_universal", fills_the_disk)
    with pytest.raises(reshard.ReshardError) as err:
        reshard.convert_to_universal(tmp_path, "epoch-0003", DistEnv())
    message = str(err.value)
    assert message.startswith(f"no space to convert checkpoint {tag} for 1 processes in {tmp_path}"), message
    assert "MB free there now" in message and "resume on 2 processes" in message, message
    assert not (tmp_path / (PARTIAL + "epoch-0003-universal")).exists()


def test_other_conversion_failures_keep_their_refusal(tmp_path, monkeypatch):
    (tmp_path / "epoch-0003").mkdir()

    def fails(src, out):
        raise KeyError("param_shapes")

    monkeypatch.setattr(reshard, "_run_ds_to_universal", fails)
    with pytest.raises(reshard.ReshardError, match="could not be re-partitioned for 1 processes"):
        reshard.convert_to_universal(tmp_path, "epoch-0003", DistEnv())

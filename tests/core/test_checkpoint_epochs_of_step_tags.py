"""A resume asking for fewer `train.epochs` than the run has trained is refused, also when the run tags its
checkpoints by optimizer step (`train.checkpoint_every_steps`: the end of each epoch is saved as `step-N`). The check
read the epoch from the tag's name only, so with step tags it let `train.epochs=1` resume a run that had trained 2
epochs: nothing trained, and the export's metrics.json and config.yaml said 1 epoch of a 2-epoch model. The save now
records where in the epochs a checkpoint stands (from the client state's `data_position`) beside its save order."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.checkpoint import CheckpointManager, epoch_tag, step_tag
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import UserError

from support.engines import SingleProcessLayout


class _Engine(SingleProcessLayout):
    """Writes what DeepSpeed's save would (the module and the client state), enough for the manager's checks."""

    def save_checkpoint(self, save_dir, tag=None, client_state=None, **kwargs):
        (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
        torch.save({"module": {}, "client": client_state}, Path(save_dir) / tag / "mp_rank_00_model_states.pt")


def _after_epoch(epoch: int) -> dict:
    return {"data_position": {"next_epoch": epoch + 1, "granularity": "epoch"}}


def test_an_epoch_end_saved_under_a_step_tag_counts_its_epochs(tmp_path):
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(_Engine(), step_tag(3), _after_epoch(0))
    m.save(_Engine(), step_tag(6), _after_epoch(1))
    m.check_fresh_start(resume=True, epochs=2)  # nothing left to train: the finish again
    with pytest.raises(UserError, match=r"train.epochs=1: .* has trained 2 epochs \(its latest checkpoint "
                                        r"step-000006\)"):
        m.check_fresh_start(resume=True, epochs=1)


def test_a_mid_epoch_checkpoint_needs_the_epoch_it_is_inside(tmp_path):
    """Saved after step 2 of epoch 1: a resume with train.epochs=1 would stop with part of epoch 1 in the weights."""
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(_Engine(), epoch_tag(0), _after_epoch(0))
    m.save(_Engine(), step_tag(5), {"data_position": {"next_epoch": 1, "granularity": "step", "step_in_epoch": 2}})
    m.check_fresh_start(resume=True, epochs=2)
    with pytest.raises(UserError, match=r"train.epochs=1: .* has trained 1 epoch\(s\) and part of the next "
                                        r"\(its latest checkpoint step-000005\)"):
        m.check_fresh_start(resume=True, epochs=1)


def test_a_checkpoint_without_a_data_position_is_judged_by_its_tag_alone(tmp_path):
    """Saved by an older version (or a recipe that records none): an epoch tag still says its epochs."""
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(_Engine(), epoch_tag(1), {})
    with pytest.raises(UserError, match="has trained 2 epochs"):
        m.check_fresh_start(resume=True, epochs=1)
    m.save(_Engine(), step_tag(9), {})
    m.check_fresh_start(resume=True, epochs=1)

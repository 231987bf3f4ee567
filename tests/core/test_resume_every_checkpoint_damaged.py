"""`run.resume=true` on a run whose checkpoints are all torn or damaged (a run folder copied in part to another
machine, a disk that lost blocks) is refused, naming each checkpoint and what is wrong with it. It used to start the
run from its first epoch with one INFO line ("no checkpoint ... starting from the beginning"): the "resumed" run
trained afresh under the old run's records, and its retention then deleted the damaged checkpoints, the only copy
of what the run had trained. A folder whose only save was killed before it completed (no checkpoint named yet)
still starts from the beginning: nothing was trained to keep."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.checkpoint import PARTIAL, CheckpointError, CheckpointManager, epoch_tag
from mmlnb_dist.core.distributed import DistEnv

from support.engines import SingleProcessLayout

STATES = "mp_rank_00_model_states.pt"


class StandInEngine(SingleProcessLayout):
    def __init__(self):
        self.loaded = []

    def save_checkpoint(self, save_dir, tag=None, client_state=None, **kwargs):
        (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
        torch.save({"client": client_state}, Path(save_dir) / tag / STATES)

    def load_checkpoint(self, load_dir, tag=None, **kwargs):
        self.loaded.append(tag)
        return str(Path(load_dir) / tag), torch.load(Path(load_dir) / tag / STATES, weights_only=False)["client"]


def test_a_resume_over_only_damaged_checkpoints_is_refused_naming_them(tmp_path):
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    for epoch in range(2):
        m.save(StandInEngine(), epoch_tag(epoch), {"next_epoch": epoch + 1})
    (m.dir / epoch_tag(0) / STATES).write_bytes(b"lost blocks")
    (m.dir / epoch_tag(1) / "checksums.json").unlink()  # copied in part
    engine = StandInEngine()
    with pytest.raises(CheckpointError) as err:
        m.resume(engine, True)
    message = str(err.value)
    assert message.startswith(f"no complete checkpoint in {m.dir}"), message
    assert f"{m.dir / epoch_tag(0) / STATES} differs from what was saved" in message, message
    assert f"{m.dir / epoch_tag(1)} has no checksums.json" in message, message
    assert engine.loaded == []
    assert sorted(p.name for p in m.dir.iterdir() if p.is_dir()) == [epoch_tag(0), epoch_tag(1)]


def test_a_resume_after_a_first_save_that_was_killed_starts_from_the_beginning(tmp_path):
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(StandInEngine(), epoch_tag(0), {"next_epoch": 1})
    (m.dir / epoch_tag(0)).rename(m.dir / (PARTIAL + epoch_tag(0)))  # as a kill before the rename leaves it
    assert m.resume(StandInEngine(), True) == {}

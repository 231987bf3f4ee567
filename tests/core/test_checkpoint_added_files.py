"""A file added to a checkpoint after its save (another run's partition copied into it, a merge of two copies of a
run folder) makes it damaged, as a changed or missing file does. Only the files `checksums.json` listed were checked,
and DeepSpeed finds a ZeRO checkpoint's partition files by pattern (`*zero_pp_rank_*_optim_states.pt`): an added
one was unpickled and loaded into the run although the docs promise checkpoints are loaded only "unchanged since"
this tool wrote them."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.core.checkpoint import CheckpointError, CheckpointManager, checkpoint_problem, epoch_tag
from mmlnb_dist.core.distributed import DistEnv

from support.engines import SingleProcessLayout

ADDED = "zero_pp_rank_1_mp_rank_00_optim_states.pt"


class StandInEngine(SingleProcessLayout):
    def save_checkpoint(self, save_dir, tag=None, **kwargs):
        (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
        (Path(save_dir) / tag / "mp_rank_00_model_states.pt").write_bytes(b"weights of " + tag.encode())
        (Path(save_dir) / tag / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"rank 0's partition")

    def load_checkpoint(self, *args, **kwargs):
        raise AssertionError("a checkpoint with an added file was handed to DeepSpeed")


def test_a_file_added_after_the_save_makes_the_checkpoint_damaged(tmp_path):
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(StandInEngine(), epoch_tag(0), {})
    m.save(StandInEngine(), epoch_tag(1), {})
    assert checkpoint_problem(m.dir / epoch_tag(1)) is None
    (m.dir / epoch_tag(1) / ADDED).write_bytes(b"another run's partition")
    assert checkpoint_problem(m.dir / epoch_tag(1)) == \
        f"{m.dir / epoch_tag(1) / ADDED} was not there when the checkpoint was saved"
    assert m.latest() == epoch_tag(0)  # the resume falls back past it
    with pytest.raises(CheckpointError, match=f"cannot load checkpoint {epoch_tag(1)}: .*{ADDED} was not there"):
        m.load(StandInEngine(), epoch_tag(1))

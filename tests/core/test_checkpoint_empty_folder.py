"""An empty checkpoints folder (a run stopped before its first checkpoint, or made by hand) was answered "has no
run.json: it was not written by mmlnb-dist", sending the user after a foreign-file problem that is not there.
It holds nothing to load: `evaluate --checkpoint` says so, and a resume starts from the beginning."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.checkpoint import CheckpointManager, fp32_state_dict_from_checkpoint
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import UserError


def test_evaluating_an_empty_checkpoints_folder_says_it_holds_no_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    with pytest.raises(UserError) as caught:
        fp32_state_dict_from_checkpoint(folder)
    message = str(caught.value)
    assert str(folder) in message and "no checkpoint" in message and "not written by mmlnb-dist" not in message


def test_loading_from_an_empty_checkpoints_folder_starts_from_the_beginning(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert CheckpointManager(folder, DistEnv()).load(engine=None) == (None, {})


def test_a_folder_of_foreign_files_is_still_refused(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / "global_step1").mkdir(parents=True)
    with pytest.raises(UserError, match="not written by mmlnb-dist"):
        fp32_state_dict_from_checkpoint(folder)

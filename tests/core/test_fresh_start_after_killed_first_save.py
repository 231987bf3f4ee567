"""A run killed during its first checkpoint save (or stopped by a full disk there) left only the `run.json` marker
and the half-written `.partial-<tag>/`: no checkpoint, nothing trained to keep. Starting it again without
`run.resume` was refused ("already holds checkpoints; pass run.resume=true"), and a resume with other settings was
refused too ("Resume with the stored settings ..."), so the user had to pick another run.name for a run that had
kept nothing. Such a folder is now taken as what it is: no checkpoint, as for a run killed before its first save.
Anything else in it (a checkpoint, complete or torn, foreign files) still refuses a fresh start."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.checkpoint import PARTIAL, CheckpointManager, epoch_tag
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.recipe import check_resume_config
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

from support.engines import SingleProcessLayout


class StandInEngine(SingleProcessLayout):
    def save_checkpoint(self, save_dir, tag=None, **kwargs):
        (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
        (Path(save_dir) / tag / "mp_rank_00_model_states.pt").write_bytes(b"weights")


def _killed_in_first_save(ckpt_dir: Path) -> CheckpointManager:
    m = CheckpointManager(ckpt_dir, DistEnv())
    m.save(StandInEngine(), epoch_tag(0), {})
    for name in ("latest", "checksums.json"):
        for path in ckpt_dir.rglob(name):
            path.unlink()
    (ckpt_dir / epoch_tag(0)).rename(ckpt_dir / (PARTIAL + epoch_tag(0)))  # as a kill before the rename leaves it
    return m


def test_a_fresh_start_over_a_killed_first_save_is_allowed(tmp_path):
    _killed_in_first_save(tmp_path / "ckpt").check_fresh_start(resume=False)


@pytest.mark.parametrize("left", ["complete", "torn", "foreign"])
def test_a_fresh_start_over_a_checkpoint_is_still_refused(tmp_path, left):
    m = _killed_in_first_save(tmp_path / "ckpt")
    if left == "complete":
        m.save(StandInEngine(), epoch_tag(1), {})
    elif left == "torn":
        (m.dir / epoch_tag(1)).mkdir()
    else:
        (m.dir / "global_step1").mkdir()
    with pytest.raises(UserError, match="already holds checkpoints"):
        m.check_fresh_start(resume=False)


def test_a_resume_with_other_settings_says_nothing_was_trained(tmp_path):
    started = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r", "train.lr=0.001"])
    save_config(started, started.run.dir / "config.yaml")
    _killed_in_first_save(started.run.dir / "checkpoints")
    resumed = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r", "train.lr=0.003", "run.resume=true"])
    with pytest.raises(UserError, match="Nothing was trained yet"):
        check_resume_config(resumed, started.run.dir, FusionRecipe, record=False)

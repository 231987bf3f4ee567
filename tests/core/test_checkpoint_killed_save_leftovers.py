"""What a save killed mid-way leaves (`.partial-<tag>/`, DeepSpeed's files of a whole checkpoint) is removed by the
run's next save, whatever tag that save has. Only a save of the same tag removed it: a SIGTERM's step checkpoint
killed by the scheduler's SIGKILL (Slurm's KillWait) while it was written, or a universal conversion killed mid-way,
is a tag the resumed run never saves again (it resumes from the checkpoint before and saves at its own cadence),
so its half-written files held a checkpoint's worth of disk for the rest of the run and after it."""
from __future__ import annotations

from pathlib import Path

from mmlnb_dist.core.checkpoint import PARTIAL, CheckpointManager, epoch_tag, step_tag
from mmlnb_dist.core.distributed import DistEnv

from support.engines import SingleProcessLayout


class StandInEngine(SingleProcessLayout):
    def save_checkpoint(self, save_dir, tag=None, **kwargs):
        (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
        (Path(save_dir) / tag / "mp_rank_00_model_states.pt").write_bytes(b"weights of " + tag.encode())


def test_the_next_save_removes_every_half_written_checkpoint_of_a_killed_save(tmp_path):
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(StandInEngine(), step_tag(10), {})
    killed = [m.dir / (PARTIAL + step_tag(13)), m.dir / (PARTIAL + step_tag(10) + "-universal")]
    for folder in killed:
        folder.mkdir()
        (folder / "mp_rank_00_model_states.pt").write_bytes(b"half of a checkpoint")
    m.save(StandInEngine(), step_tag(15), {})
    assert [p.name for p in killed if p.exists()] == []
    assert m.tags() == [step_tag(10), step_tag(15)] and m.latest() == step_tag(15)


def test_a_save_keeps_the_checkpoints_and_records_beside_it(tmp_path):
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(StandInEngine(), epoch_tag(0), {}, best={"tag": epoch_tag(0), "value": 1.0})
    m.save(StandInEngine(), epoch_tag(1), {})
    assert sorted(p.name for p in m.dir.iterdir()) == ["best.json", epoch_tag(0), epoch_tag(1), "latest", "run.json"]

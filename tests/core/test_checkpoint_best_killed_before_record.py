"""A kill after a save's rename but before `best.json` was rewritten left the previous best record beside a newer,
better, complete checkpoint: `evaluate --checkpoint` (which picks the best by default) then scored the older
weights. The best record travels inside the checkpoint (its saved record, covered by its checksums), so the newest
complete checkpoint decides, whatever the kill point."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.core import checkpoint as ckpt
from mmlnb_dist.core.checkpoint import CheckpointManager, epoch_tag
from mmlnb_dist.core.distributed import DistEnv

from support.engines import SingleProcessLayout


class StandInEngine(SingleProcessLayout):
    def save_checkpoint(self, save_dir, tag=None, **kwargs):
        (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
        (Path(save_dir) / tag / "mp_rank_00_model_states.pt").write_bytes(b"weights of " + tag.encode())


class Killed(Exception):
    pass


@pytest.mark.parametrize("kill_at", ["latest", "best.json"])
def test_a_kill_after_the_rename_leaves_the_new_best_recorded(tmp_path, monkeypatch, kill_at):
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(StandInEngine(), epoch_tag(0), {}, best={"tag": epoch_tag(0), "epoch": 0, "value": 0.5})
    real = ckpt.replace_text

    def killed_writing(path, text):
        if Path(path).name == kill_at:
            raise Killed(f"killed before writing {path}")
        return real(path, text)

    monkeypatch.setattr(ckpt, "replace_text", killed_writing)
    new_best = {"tag": epoch_tag(1), "epoch": 1, "value": 0.9}
    with pytest.raises(Killed):
        m.save(StandInEngine(), epoch_tag(1), {}, best=new_best)
    assert m.latest() == epoch_tag(1)
    assert CheckpointManager(tmp_path / "ckpt", DistEnv()).best == new_best


def test_the_best_record_of_an_older_checkpoint_stays_when_a_later_save_is_not_better(tmp_path):
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    best = {"tag": epoch_tag(0), "epoch": 0, "value": 0.9}
    m.save(StandInEngine(), epoch_tag(0), {}, best=best)
    m.save(StandInEngine(), epoch_tag(1), {}, best=best)
    m.save(StandInEngine(), epoch_tag(2), {})  # a save that records no best (a step checkpoint of some recipes)
    assert m.best == best

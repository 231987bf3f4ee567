"""A resume reads every file of the checkpoint it loads once to verify it, not twice: `latest()` verified the newest
complete tag and `load` then verified the same tag again, on every rank (two full reads of a checkpoint that may be
tens of GB per rank before the first step). An explicitly named tag (the best checkpoint's reload) is still verified."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from mmlnb_dist.core import checkpoint
from mmlnb_dist.core.checkpoint import CheckpointManager, epoch_tag
from mmlnb_dist.core.distributed import DistEnv

from support.engines import SingleProcessLayout

STATES = "mp_rank_00_model_states.pt"


class StandInEngine(SingleProcessLayout):
    def __init__(self):
        self._config = type("Config", (), {"load_universal_checkpoint": False})()

    def save_checkpoint(self, save_dir, tag=None, client_state=None, **kwargs):
        (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
        torch.save({"client": client_state}, Path(save_dir) / tag / STATES)

    def load_checkpoint(self, load_dir, tag=None, **kwargs):
        return str(Path(load_dir) / tag), torch.load(Path(load_dir) / tag / STATES, weights_only=False)["client"]


def test_a_resume_reads_each_file_of_its_checkpoint_once(tmp_path, monkeypatch):
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(StandInEngine(), epoch_tag(0), {"next_epoch": 1})
    reads = Counter()
    digest = checkpoint.sha256_file
    monkeypatch.setattr(checkpoint, "sha256_file", lambda path: reads.update([Path(path).name]) or digest(path))
    assert m.resume(StandInEngine(), True)["next_epoch"] == 1
    assert reads[STATES] == 1, reads
    reads.clear()
    m.load(StandInEngine(), epoch_tag(0), module_only=True)
    assert reads[STATES] == 1, reads

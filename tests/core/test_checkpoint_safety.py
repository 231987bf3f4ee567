"""Checkpoints that are torn, damaged or not ours are never loaded.

Issue 11 item 7: with the `latest` marker missing, the newest folder was taken without checking it, and a torn
checkpoint crashed the resume. Item 11: DeepSpeed's checkpoint files are pickles; resume and `evaluate
--checkpoint` unpickled whatever folder they were given."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from deepspeed.runtime.engine import DeepSpeedEngine

from mmlnb_dist.core.checkpoint import CheckpointManager, fp32_state_dict_from_checkpoint
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.recipe import run
from support.engines import SingleProcessLayout
from support.probe import LinearProbe, multi_hot_shards, probe_config

SETTINGS = ("tracking.backends=[stdout]", "train.lr_schedule.name=constant", "train.lr_schedule.warmup_ratio=0",
            "train.keep_checkpoints=3")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return multi_hot_shards(tmp_path_factory.mktemp("probe"))


@pytest.fixture(scope="module")
def uninterrupted(shards, tmp_path_factory):
    """Final weights of an uninterrupted three-epoch run."""
    out = tmp_path_factory.mktemp("full")
    run(LinearProbe, probe_config(shards, out, *SETTINGS))
    return fp32_state_dict_from_checkpoint(out / "probe" / "checkpoints")[1]


def model_states(tag_dir: Path) -> Path:
    (path,) = tag_dir.glob("*model_states.pt")
    return path


def assert_same_weights(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Killed(KeyboardInterrupt):
    pass


def test_a_damaged_newest_checkpoint_is_skipped_with_a_message(shards, uninterrupted, tmp_path, caplog):
    run(LinearProbe, probe_config(shards, tmp_path, *SETTINGS))
    ckpt = tmp_path / "probe" / "checkpoints"
    newest = model_states(ckpt / "epoch-0002")
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a torn write
    assert (ckpt / "latest").read_text().strip() == "epoch-0002"

    with caplog.at_level("WARNING", logger="mmlnb_dist.core.checkpoint"):
        assert CheckpointManager(ckpt, DistEnv()).latest() == "epoch-0001"
        run(LinearProbe, probe_config(shards, tmp_path, *SETTINGS, "run.resume=true"))
    assert "skipping checkpoint epoch-0002" in caplog.text and newest.name in caplog.text
    assert_same_weights(fp32_state_dict_from_checkpoint(ckpt)[1], uninterrupted)  # epoch 2 was trained again


def test_a_save_killed_midway_leaves_no_checkpoint_that_looks_complete(shards, uninterrupted, tmp_path, monkeypatch):
    original = DeepSpeedEngine.save_checkpoint
    calls = []

    def save_then_die_halfway(self, save_dir, tag=None, **kwargs):
        calls.append(tag)
        original(self, save_dir, tag=tag, **kwargs)
        if len(calls) == 2:  # the second save (epoch 1): the process dies while files are half written
            states = model_states(Path(save_dir) / tag)
            states.write_bytes(states.read_bytes()[:100])
            raise Killed()

    monkeypatch.setattr(DeepSpeedEngine, "save_checkpoint", save_then_die_halfway)
    with pytest.raises(Killed):
        run(LinearProbe, probe_config(shards, tmp_path, *SETTINGS))
    monkeypatch.setattr(DeepSpeedEngine, "save_checkpoint", original)

    ckpt = tmp_path / "probe" / "checkpoints"
    (ckpt / "latest").unlink(missing_ok=True)  # the pointer lost as well: only the folders can tell
    assert [p.name for p in ckpt.iterdir() if p.name.startswith("epoch-")] == ["epoch-0000"]
    run(LinearProbe, probe_config(shards, tmp_path, *SETTINGS, "run.resume=true"))
    assert_same_weights(fp32_state_dict_from_checkpoint(ckpt)[1], uninterrupted)


def test_checkpoints_not_written_by_this_tool_or_changed_since_are_not_unpickled(shards, tmp_path):
    run(LinearProbe, probe_config(shards, tmp_path, *SETTINGS, "train.epochs=1"))
    ckpt = tmp_path / "probe" / "checkpoints"
    marker = (ckpt / "run.json").read_text()

    (ckpt / "run.json").unlink()  # a folder from somewhere else
    with pytest.raises(UserError, match="not written by mmlnb-dist"):
        fp32_state_dict_from_checkpoint(ckpt)
    with pytest.raises(UserError, match="not written by mmlnb-dist"):
        run(LinearProbe, probe_config(shards, tmp_path, *SETTINGS, "train.epochs=2", "run.resume=true"))

    (ckpt / "run.json").write_text(marker)
    states = model_states(ckpt / "epoch-0000")
    data = bytearray(states.read_bytes())
    data[-20] ^= 0xFF  # same size, one byte changed after the save
    states.write_bytes(bytes(data))
    with pytest.raises(UserError, match="differs from what was saved"):
        fp32_state_dict_from_checkpoint(ckpt)


def test_tags_are_ordered_as_they_were_saved_not_by_their_numbers(tmp_path):
    """A run tagged by epoch that a SIGTERM stopped inside epoch 1 holds `step-000008`; the epochs saved after
    the resume (`epoch-0001`, `epoch-0002`) are newer though their numbers are smaller. Tags written before the
    order was recorded (no `saved.json`) keep their number order, before the others."""
    import json

    from mmlnb_dist.core.checkpoint import SAVED, list_tags

    for tag, sequence in (("epoch-0003", None), ("epoch-0010", None), ("epoch-0000", 1), ("step-000008", 2),
                          ("epoch-0001", 3), ("epoch-0002", 4)):
        (tmp_path / tag).mkdir()
        if sequence is not None:
            (tmp_path / tag / SAVED).write_text(json.dumps({"sequence": sequence}))
    assert list_tags(tmp_path) == ["epoch-0003", "epoch-0010", "epoch-0000", "step-000008", "epoch-0001",
                                   "epoch-0002"]


def test_a_full_disk_during_a_save_is_one_clear_error_and_the_resume_ends_as_an_uninterrupted_run(
        shards, uninterrupted, tmp_path, monkeypatch):
    """The disk fills while the second checkpoint is written: the run used to end in DeepSpeed's 40-line traceback
    with the half-written folder left taking space. Now: one UserError naming the checkpoint, its folder, the free
    space and the last complete checkpoint; the half-written folder is removed; a resume with space again ends as
    the uninterrupted run."""
    import errno

    original = DeepSpeedEngine.save_checkpoint
    calls = []

    def disk_fills_on_the_second_save(self, save_dir, tag=None, **kwargs):
        calls.append(tag)
        if len(calls) == 2:
            (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
            (Path(save_dir) / tag / "mp_rank_00_model_states.pt").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, save_dir, tag=tag, **kwargs)

    monkeypatch.setattr(DeepSpeedEngine, "save_checkpoint", disk_fills_on_the_second_save)
    with pytest.raises(UserError) as err:
        run(LinearProbe, probe_config(shards, tmp_path, *SETTINGS))
    ckpt = tmp_path / "probe" / "checkpoints"
    message = str(err.value)
    assert message.startswith(f"no space left on device saving checkpoint epoch-0001 in {ckpt}"), message
    assert "MB free there" in message and "epoch-0000 is intact" in message and "run.resume=true" in message
    assert sorted(p.name for p in ckpt.iterdir() if p.is_dir()) == ["epoch-0000"]  # the partial one removed

    monkeypatch.setattr(DeepSpeedEngine, "save_checkpoint", original)
    run(LinearProbe, probe_config(shards, tmp_path, *SETTINGS, "run.resume=true"))
    assert_same_weights(fp32_state_dict_from_checkpoint(ckpt)[1], uninterrupted)


class _StandInEngine(SingleProcessLayout):
    """What `CheckpointManager.save` asks of a DeepSpeed engine: it writes one small file per save and reports a
    single-process fp32 layout (the retention under test never looks inside a checkpoint)."""

    def save_checkpoint(self, save_dir, tag=None, **kwargs):
        (Path(save_dir) / tag).mkdir(parents=True)
        (Path(save_dir) / tag / "mp_rank_00_model_states.pt").write_bytes(b"weights of " + tag.encode())


@pytest.mark.parametrize("best,left", [("epoch-0000", ["epoch-0000", "epoch-0003", "epoch-0004"]),
                                       (None, ["epoch-0003", "epoch-0004"])])
def test_keep_checkpoints_keeps_exactly_the_newest_n_and_the_best(tmp_path, best, left):
    """train.keep_checkpoints=2 over five epochs leaves the two newest checkpoints, plus the best one when it is
    older; no more (a user would run out of disk) and no fewer (a resume would lose its fallback)."""
    from mmlnb_dist.core.checkpoint import epoch_tag

    manager, engine = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=2), _StandInEngine()
    for epoch in range(5):
        tag = epoch_tag(epoch)
        manager.save(engine, tag, {"epoch": epoch}, best={"tag": best, "value": 0.9} if best else None)
    assert manager.tags() == left
    assert manager.latest() == "epoch-0004"

"""Mutation-audit gaps of core.checkpoint, checked without DeepSpeed through a stand-in engine: which value is
"better" (NaN, ties, min), which tag a resume and an evaluation pick (newest complete, the explicit one, the best),
what a save leaves (no stale partial or universal files, a repeated tag replaced, the order of saves, the `latest`
pointer), which errors are a full disk, how RNG states come back per rank, and the fresh-start/epochs checks."""
from __future__ import annotations

import errno
import math
import random
from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.checkpoint import (CHECKSUMS, CheckpointError, CheckpointManager, better, epoch_tag,
                                        fp32_state_dict_from_checkpoint, record_checksums, rng_state, step_tag)
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import UserError

from support.engines import SingleProcessLayout

STATES = "mp_rank_00_model_states.pt"


class _Config:
    load_universal_checkpoint = False


class StandInEngine(SingleProcessLayout):
    """What `CheckpointManager` asks of a DeepSpeed engine: `save_checkpoint` writes the module weights and the
    client state into the tag folder (DeepSpeed writes into a folder that may exist), `load_checkpoint` reads them
    back; a single-process fp32 layout."""

    def __init__(self, weight: float = 0.0, fail: OSError | None = None):
        self.weight, self.fail, self._config, self.loaded = weight, fail, _Config(), []

    def save_checkpoint(self, save_dir, tag=None, client_state=None, **kwargs):
        if self.fail is not None:
            (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
            (Path(save_dir) / tag / STATES).write_bytes(b"half")
            raise self.fail
        (Path(save_dir) / tag).mkdir(parents=True, exist_ok=True)
        torch.save({"module": {"w": torch.full((2,), self.weight)}, "client": client_state},
                   Path(save_dir) / tag / STATES)

    def load_checkpoint(self, load_dir, tag=None, **kwargs):
        self.loaded.append((tag, kwargs))
        states = torch.load(Path(load_dir) / tag / STATES, weights_only=False)
        return str(Path(load_dir) / tag), states["client"]


def manager(tmp_path, keep=5, env=None) -> CheckpointManager:
    return CheckpointManager(tmp_path / "ckpt", env or DistEnv(), keep=keep)


def test_better_never_crowns_a_nan_or_a_tie_and_min_means_lower():
    """A NaN metric would otherwise stay the best forever; a tie keeps the holder; `min` (the loss) is lower."""
    assert not better(math.nan, 0.5, "max") and not better(math.nan, None, "max") and not better(None, 0.1, "min")
    assert better(0.1, math.nan, "max") and better(0.1, None, "min")
    assert not better(0.5, 0.5, "max") and not better(0.5, 0.5, "min")
    assert better(0.6, 0.5, "max") and not better(0.6, 0.5, "min") and better(0.4, 0.5, "min")


def test_newer_tags_without_checksums_or_changed_since_are_skipped_by_latest(tmp_path):
    """A tag with no checksums.json (a save that never completed, another tool) or a file whose bytes changed at
    the same size is not resumed from."""
    m = manager(tmp_path)
    m.save(StandInEngine(), epoch_tag(0), {})
    m.save(StandInEngine(), epoch_tag(1), {})
    (m.dir / epoch_tag(1) / CHECKSUMS).unlink()
    assert m.latest() == epoch_tag(0)
    m.save(StandInEngine(), epoch_tag(2), {})
    states = m.dir / epoch_tag(2) / STATES
    data = bytearray(states.read_bytes())
    data[-3] ^= 0xFF  # same size, one byte changed since the save
    states.write_bytes(bytes(data))
    assert m.latest() == epoch_tag(0)
    (m.dir / epoch_tag(0) / STATES).unlink()  # a recorded file gone: named, not a crash
    assert m.latest() is None


def test_a_save_is_ordered_by_when_it_was_saved_and_updates_the_latest_pointer(tmp_path):
    """A SIGTERM's step tag saved before the next epoch's tag is older though its number is larger."""
    m = manager(tmp_path)
    m.save(StandInEngine(), step_tag(8), {})
    m.save(StandInEngine(), epoch_tag(1), {})
    assert m.tags() == [step_tag(8), epoch_tag(1)] and m.latest() == epoch_tag(1)
    assert (m.dir / "latest").read_text() == epoch_tag(1)
    assert not list(m.dir.glob("*.tmp"))


def test_a_save_clears_what_a_killed_save_and_an_old_conversion_left(tmp_path):
    """A killed save's `.partial-<tag>` files and the universal conversion of an earlier save of the same tag
    must not end up in (or be loaded instead of) the new checkpoint."""
    m = manager(tmp_path)
    m.save(StandInEngine(weight=1.0), epoch_tag(0), {})
    (m.dir / (epoch_tag(0) + "-universal")).mkdir()
    stale = m.dir / (".partial-" + epoch_tag(1))
    stale.mkdir()
    (stale / "mp_rank_01_model_states.pt").write_bytes(b"from a killed save on two processes")
    m.save(StandInEngine(weight=2.0), epoch_tag(1), {})
    assert not (m.dir / epoch_tag(1) / "mp_rank_01_model_states.pt").exists() and not stale.exists()

    m.save(StandInEngine(weight=3.0), epoch_tag(0), {})  # a resumed run repeating a tag replaces it
    assert not (m.dir / (epoch_tag(0) + "-universal")).exists()
    assert torch.equal(fp32_state_dict_from_checkpoint(m.dir, epoch_tag(0))[1]["w"], torch.full((2,), 3.0))
    assert m.tags() == [epoch_tag(1), epoch_tag(0)]


def test_only_a_full_disk_is_reported_as_one_and_other_errors_pass_through(tmp_path):
    m = manager(tmp_path)
    m.save(StandInEngine(), epoch_tag(0), {})
    with pytest.raises(PermissionError):
        m.save(StandInEngine(fail=PermissionError(errno.EACCES, "Permission denied")), epoch_tag(1), {})
    with pytest.raises(UserError, match=f"no space left on device saving checkpoint {epoch_tag(1)}"):
        m.save(StandInEngine(fail=OSError(errno.EDQUOT, "Disk quota exceeded")), epoch_tag(1), {})
    assert not (m.dir / (".partial-" + epoch_tag(1))).exists() and m.latest() == epoch_tag(0)


def test_evaluation_takes_the_best_checkpoint_else_the_newest(tmp_path):
    m = manager(tmp_path)
    m.save(StandInEngine(weight=1.0), epoch_tag(0), {})
    m.save(StandInEngine(weight=2.0), epoch_tag(1), {})
    assert fp32_state_dict_from_checkpoint(m.dir)[0] == epoch_tag(1)
    m.save(StandInEngine(weight=3.0), epoch_tag(2), {}, best={"tag": epoch_tag(0), "value": 0.9})
    tag, weights = fp32_state_dict_from_checkpoint(m.dir)
    assert tag == epoch_tag(0) and torch.equal(weights["w"], torch.full((2,), 1.0))


def test_load_honours_an_explicit_tag_and_refuses_it_damaged(tmp_path):
    m = manager(tmp_path)
    m.save(StandInEngine(), epoch_tag(0), {"next_epoch": 1})
    m.save(StandInEngine(), epoch_tag(1), {"next_epoch": 2})
    engine = StandInEngine()
    assert m.load(engine, epoch_tag(0))[1]["next_epoch"] == 1 and engine.loaded[-1][0] == epoch_tag(0)
    (m.dir / epoch_tag(0) / STATES).write_bytes(b"changed after the save")
    with pytest.raises(CheckpointError, match=f"cannot load checkpoint {epoch_tag(0)}"):
        m.load(engine, epoch_tag(0))
    assert len(engine.loaded) == 1  # never handed to DeepSpeed's unpickler


def _draws():
    return random.random(), torch.rand(2).tolist()


def test_each_rank_gets_back_its_own_rng_state_and_module_only_loads_none(tmp_path):
    """A checkpoint saved before layouts were recorded (no layout.json) by two ranks: rank 1 resumes rank 1's
    random numbers; a module-only load (fine-tuning from weights) leaves the generators alone."""
    m = manager(tmp_path)
    m.save(StandInEngine(), epoch_tag(0), {})
    tag_dir = m.dir / epoch_tag(0)
    random.seed(0), torch.manual_seed(0)
    rank0 = rng_state()
    random.seed(1), torch.manual_seed(1)
    rank1 = rng_state()
    expected = _draws()
    torch.save({"module": {}, "client": {"rng": [rank0, rank1]}}, tag_dir / STATES)
    (tag_dir / "layout.json").unlink()
    record_checksums(tag_dir)

    rank_1 = manager(tmp_path, env=DistEnv(rank=1, world_size=2))
    random.seed(5), torch.manual_seed(5)
    assert rank_1.load(StandInEngine())[0] == epoch_tag(0)
    assert _draws() == expected

    random.seed(5), torch.manual_seed(5)
    untouched = _draws()
    random.seed(5), torch.manual_seed(5)
    engine = StandInEngine()
    rank_1.load(engine, module_only=True)
    assert _draws() == untouched and engine.loaded[-1][1]["load_module_only"] is True


def test_a_fresh_start_is_refused_only_over_real_checkpoints(tmp_path):
    m = manager(tmp_path)
    m.dir.mkdir()
    m.check_fresh_start(resume=False)  # an empty checkpoint folder holds nothing to mix with
    m.save(StandInEngine(), epoch_tag(1), {})
    with pytest.raises(UserError, match="already holds checkpoints"):
        m.check_fresh_start(resume=False)


def test_the_epochs_check_on_resume_counts_epochs_from_zero_and_skips_step_tags(tmp_path):
    """epoch-0001 means two epochs trained: train.epochs=2 resumes (nothing left), 1 is refused; a run whose newest
    checkpoint is a step tag is not judged by its number."""
    m = manager(tmp_path)
    m.save(StandInEngine(), epoch_tag(1), {})
    m.check_fresh_start(resume=True, epochs=2)
    with pytest.raises(UserError, match="has trained 2 epochs"):
        m.check_fresh_start(resume=True, epochs=1)
    m.save(StandInEngine(), step_tag(40), {})
    m.check_fresh_start(resume=True, epochs=1)


# The resume check of `train.epochs` judges from the checkpoint the resume will load (the newest complete one), not
# from the newest tag's name: with that tag torn, the resume falls back to the one before it, and the check refused
# `train.epochs` equal to what that checkpoint had trained although the run had that epoch to go back to.
def _two_epochs_newest_damaged(tmp_path) -> CheckpointManager:
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(StandInEngine(weight=1.0), epoch_tag(0), {})
    m.save(StandInEngine(weight=2.0), epoch_tag(1), {})
    (m.dir / epoch_tag(1) / STATES).write_bytes(b"torn by a full disk")
    assert m.latest() == epoch_tag(0)
    return m


def test_the_epochs_check_counts_what_the_resumed_checkpoint_trained(tmp_path):
    """epoch-0001 damaged: the resume loads epoch-0000 (one epoch trained), so train.epochs=1 is no shortening."""
    _two_epochs_newest_damaged(tmp_path).check_fresh_start(resume=True, epochs=1)


def test_fewer_epochs_than_the_resumed_checkpoint_are_still_refused(tmp_path):
    """The check itself stays: train.epochs below what the loadable checkpoint trained is refused, naming it."""
    m = _two_epochs_newest_damaged(tmp_path)
    m.save(StandInEngine(weight=3.0), epoch_tag(2), {})
    with pytest.raises(UserError, match=r"has trained 3 epochs \(its latest checkpoint epoch-0002\)"):
        m.check_fresh_start(resume=True, epochs=2)


def test_evaluation_reads_each_checkpoint_it_verifies_once(tmp_path, monkeypatch):
    """Choosing the evaluated tag hashes the newest complete checkpoint (its record names the best) and the chosen
    one, each once: export and evaluate of a large run read its checkpoint twice or three times before loading it;
    an explicit tag hashes only that one."""
    import mmlnb_dist.core.checkpoint as checkpoint

    m = manager(tmp_path)
    for epoch in range(3):
        m.save(StandInEngine(weight=float(epoch)), epoch_tag(epoch), {},
               best={"tag": epoch_tag(0), "value": 0.9} if epoch == 2 else None)
    hashed = []
    real = checkpoint.sha256_file
    monkeypatch.setattr(checkpoint, "sha256_file", lambda p: (hashed.append(Path(p).parent.name), real(p))[1])
    files = len(list((m.dir / epoch_tag(0)).iterdir())) - 1  # all but checksums.json
    assert fp32_state_dict_from_checkpoint(m.dir)[0] == epoch_tag(0)  # the best, named by the newest's record
    assert sorted(hashed) == sorted([epoch_tag(0)] * files + [epoch_tag(2)] * files)
    (m.dir / epoch_tag(2) / "saved.json").write_text('{"sequence": 3, "best": null}')  # no best: the newest
    record_checksums(m.dir / epoch_tag(2))
    (m.dir / "best.json").unlink()
    hashed.clear()
    assert fp32_state_dict_from_checkpoint(m.dir)[0] == epoch_tag(2)
    assert hashed == [epoch_tag(2)] * files
    hashed.clear()
    assert fp32_state_dict_from_checkpoint(m.dir, epoch_tag(1))[0] == epoch_tag(1)
    assert hashed == [epoch_tag(1)] * files


class _Bf16(StandInEngine):
    """bf16 at ZeRO-0 on `dp_world_size` processes: DeepSpeed 0.19.8 writes no optimizer partition files then (its
    optimizer's fp32 copies are whole, in the model-states file: checked on the CPU)."""

    def __init__(self, world_size: int, accumulation: int, weight: float = 0.0):
        super().__init__(weight)
        self.dp_world_size, self.accumulation, self.optimizer = world_size, accumulation, None

    def bfloat16_enabled(self):
        return True

    def gradient_accumulation_steps(self):
        return self.accumulation


def test_a_bf16_zero0_checkpoint_resumes_on_another_world_size_as_it_is(tmp_path):
    """Saved on 2 processes, resumed on 1 (the same global batch): no partition files to re-partition, so it loads
    as it is; a conversion to a universal checkpoint found nothing to convert and refused the resume."""
    m = manager(tmp_path)
    m.save(_Bf16(world_size=2, accumulation=1, weight=4.0), epoch_tag(0), {"where": "e0"})
    engine = _Bf16(world_size=1, accumulation=2)
    tag, client = m.load(engine)
    assert tag == epoch_tag(0) and client["where"] == "e0" and engine.loaded[0][0] == epoch_tag(0)
    assert not (m.dir / (epoch_tag(0) + "-universal")).exists()

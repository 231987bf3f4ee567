"""A full disk while DeepSpeed writes a checkpoint: DeepSpeed writes with `torch.save`, whose C++ writer reports the
failed write as a `RuntimeError` without an errno ("basic_ios::clear: iostream error", "[enforce fail at
inline_container.cc] unexpected pos ..."), never as the OSError(ENOSPC) that `CheckpointManager.save` recognised.
The run ended in a traceback and left the half-written checkpoint taking the space. The disk is made full for real
here: the file DeepSpeed would write is a link to /dev/full, where every write fails with ENOSPC."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.checkpoint import PARTIAL, CheckpointManager, epoch_tag
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import UserError

from support.engines import SingleProcessLayout

STATES = "mp_rank_00_model_states.pt"
pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")


class TorchWritingEngine(SingleProcessLayout):
    """Saves as DeepSpeed's checkpoint engine does: `torch.save` of the state into the tag folder."""

    def __init__(self, full: bool = False):
        self.full = full

    def save_checkpoint(self, save_dir, tag=None, client_state=None, **kwargs):
        folder = Path(save_dir) / tag
        folder.mkdir(parents=True, exist_ok=True)
        if self.full:
            (folder / STATES).symlink_to("/dev/full")
        torch.save({"module": {"w": torch.zeros(4096)}, "client": client_state}, folder / STATES)


def test_a_full_disk_under_torchs_writer_is_one_clear_error_and_leaves_no_half_checkpoint(tmp_path):
    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    m.save(TorchWritingEngine(), epoch_tag(0), {})
    with pytest.raises(UserError) as err:
        m.save(TorchWritingEngine(full=True), epoch_tag(1), {})
    message = str(err.value)
    assert message.startswith(f"could not write checkpoint {epoch_tag(1)} in {m.dir}"), message
    assert "MB free there now" in message and f"{epoch_tag(0)} is intact" in message, message
    assert "run.resume=true" in message, message
    assert not (m.dir / (PARTIAL + epoch_tag(1))).exists()
    assert m.latest() == epoch_tag(0)


def test_other_runtime_errors_of_a_save_pass_through(tmp_path):
    """Only torch's failed writes are taken for the disk: a bug elsewhere keeps its traceback."""
    class Broken(TorchWritingEngine):
        def save_checkpoint(self, *args, **kwargs):
            raise RuntimeError("a bug in the engine")

    m = CheckpointManager(tmp_path / "ckpt", DistEnv(), keep=5)
    with pytest.raises(RuntimeError, match="a bug in the engine"):
        m.save(Broken(), epoch_tag(0), {})


def test_a_torch_reader_failure_is_no_full_disk():
    from mmlnb_dist.core.files import storage_failure

    assert storage_failure(RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central "
                                        "directory [enforce fail at inline_container.cc:238]")) is None
    assert storage_failure(RuntimeError("basic_ios::clear: iostream error")) == "torch: basic_ios::clear: iostream error"

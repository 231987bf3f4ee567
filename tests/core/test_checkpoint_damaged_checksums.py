"""A `checksums.json` that parses but is not the table a save writes (`null`, a list, `{"files": null}`, an entry
without its size) marks that checkpoint damaged: `latest()` warns and falls back to the older complete one. It
raised a TypeError/AttributeError/KeyError, and the resume (or evaluation) died on a bit of a file nobody reads."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.core.checkpoint import CHECKSUMS, CheckpointManager, checkpoint_problem, epoch_tag, record_checksums
from mmlnb_dist.core.distributed import DistEnv


def _tag(root, epoch):
    tag_dir = root / epoch_tag(epoch)
    tag_dir.mkdir(parents=True)
    (tag_dir / "weights.bin").write_bytes(b"w" * (epoch + 1))
    record_checksums(tag_dir)
    return tag_dir


@pytest.mark.parametrize("damaged", ["null", "[]", '{"files": null}', '{"files": []}',
                                     '{"files": {"weights.bin": {"sha256": "00"}}}', '{"files": {"weights.bin": 3}}'])
def test_a_checksums_file_of_the_wrong_shape_is_a_damaged_checkpoint(tmp_path, damaged, caplog):
    _tag(tmp_path, 0)
    newest = _tag(tmp_path, 1)
    (newest / CHECKSUMS).write_text(damaged)
    assert "damaged" in checkpoint_problem(newest)
    assert CheckpointManager(tmp_path, DistEnv()).latest() == epoch_tag(0)


def test_a_well_formed_checksums_file_still_passes(tmp_path):
    tag_dir = _tag(tmp_path, 0)
    assert checkpoint_problem(tag_dir) is None
    assert json.loads((tag_dir / CHECKSUMS).read_text())["files"]["weights.bin"]["size"] == 1

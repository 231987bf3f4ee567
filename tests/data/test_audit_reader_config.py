"""Audit of the member size limit's edge (`data.reader`: a member of exactly the limit is read) and of the data
config's refusals (`data.config`: val + test fractions of exactly 1 leave no training data; a class listed twice)."""
from __future__ import annotations

import io
import tarfile

import pytest
from pydantic import ValidationError

from mmlnb_dist.data.config import BuildConfig, DataConfig
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError


def test_a_member_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(tmp_path):
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("k.png")
        info.size = 100
        tar.addfile(info, io.BytesIO(b"x" * 100))
    assert [s["png"] for s in iter_shard_samples(path, max_member_bytes=100)] == [b"x" * 100]
    with pytest.raises(ShardError, match="100 bytes, over data.loader.max_member_bytes=99"):
        list(iter_shard_samples(path, max_member_bytes=99))


def test_fractions_that_leave_no_training_data_are_refused():
    with pytest.raises(ValidationError, match=r"val_fraction \+ test_fraction must be < 1"):
        BuildConfig(val_fraction=0.5, test_fraction=0.5)
    assert BuildConfig(val_fraction=0.5, test_fraction=0.4).test_fraction == 0.4


def test_a_class_listed_twice_is_refused():
    with pytest.raises(ValidationError, match="'PD' is listed twice"):
        DataConfig(classes=["UD", "PD", "D", "PD"])

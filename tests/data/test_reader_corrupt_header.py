"""A shard whose member header is corrupt (one flipped byte) is reported as a corrupt tar naming the shard, by the
reader, `shards verify` and the loader; tarfile took such a header for the end of the archive, so the shard read
as a short one (verify: only 'N samples, manifest says M'; the loader: the rest of the shard as 'missing' samples
in the ledger, as if the tar had been cut)."""
from __future__ import annotations

import tarfile

import pytest

from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError
from mmlnb_dist.data.verify import verify_shards

from support.shards import make_shard_set


def _flip_header(path, member_index):
    """Flip one byte in the name field of the `member_index`-th member's header; returns the key before it."""
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    data = bytearray(path.read_bytes())
    data[members[member_index].offset + 10] ^= 0x01
    path.write_bytes(bytes(data))
    return members[member_index - 1].name.partition(".")[0]


@pytest.fixture()
def shards(tmp_path):
    return make_shard_set(tmp_path, per_class=2, max_per_shard=10, val_fraction=0.0)


def test_a_corrupt_member_header_raises_naming_the_shard_and_the_key_before_it(shards):
    path = shards / "train-000000.tar"
    keys = [s["__key__"] for s in iter_shard_samples(path)]
    with tarfile.open(path) as tar:
        first_of_third = next(i for i, m in enumerate(tar.getmembers()) if m.name.startswith(keys[2] + "."))
    _flip_header(path, first_of_third)
    read = []
    with pytest.raises(ShardError, match=rf"shard train-000000\.tar: truncated or corrupt tar after key "
                                         rf"'{keys[0]}' \(invalid member header at byte \d+\); restore the shard"):
        for sample in iter_shard_samples(path):
            read.append(sample["__key__"])
    assert read == keys[:1]  # the sample before the bad header may lack members: not yielded, as for a cut tar


def test_a_good_shard_and_a_shard_cut_between_samples_still_read_without_error(shards):
    path = shards / "train-000000.tar"
    keys = [s["__key__"] for s in iter_shard_samples(path)]
    with tarfile.open(path) as tar:
        cut = next(m.offset for m in tar.getmembers() if m.name.startswith(keys[3] + "."))
    path.write_bytes(path.read_bytes()[:cut])  # no end-of-archive block: the loader counts the rest as missing
    assert [s["__key__"] for s in iter_shard_samples(path)] == keys[:3]


def test_verify_names_the_corrupt_header(shards):
    _flip_header(shards / "train-000000.tar", 1)
    problems = verify_shards(shards, progress=False).problems
    assert any(p.startswith("shard train-000000.tar: truncated or corrupt tar") and "invalid member header" in p
               for p in problems), problems

"""Shards packed by hand (`tar -C dir -cf shard.tar .`) name their members `./key.jpg`: the reader keys them by the
file's own stem, as webdataset does, instead of reading every member as one sample with the empty key."""
from __future__ import annotations

import io
import tarfile

from mmlnb_dist.data.reader import iter_shard_samples


def _tar(path, names):
    with tarfile.open(path, "w") as tar:
        for name in names:
            data = name.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_members_under_dot_slash_are_keyed_by_their_stem(tmp_path):
    _tar(tmp_path / "s.tar", ["./a.jpg", "./a.cls", "./b.jpg", "./b.cls"])
    samples = list(iter_shard_samples(tmp_path / "s.tar"))
    assert [(s["__key__"], s["jpg"], s["cls"]) for s in samples] == [
        ("a", b"./a.jpg", b"./a.cls"), ("b", b"./b.jpg", b"./b.cls")]


def test_a_dotted_folder_does_not_split_the_key(tmp_path):
    # the extension starts at the first dot of the file name, not of the folder ("v1.2/a.jpg")
    _tar(tmp_path / "s.tar", ["v1.2/a.jpg", "v1.2/a.json.gz"])
    (sample,) = iter_shard_samples(tmp_path / "s.tar")
    assert sample["__key__"] == "v1.2/a" and set(sample) == {"__key__", "__shard__", "jpg", "json.gz"}


def test_an_upper_case_extension_is_read_as_its_lower_case_member(tmp_path):
    # camera and Windows exports name files a.JPG: webdataset lower-cases extensions; the reader kept "JPG", which no
    # decoder looks for, so every such sample was a bad sample "no image member"
    from mmlnb_dist.data.images import image_member

    _tar(tmp_path / "s.tar", ["A1.JPG", "A1.Cls"])
    (sample,) = iter_shard_samples(tmp_path / "s.tar")
    assert sample["__key__"] == "A1" and image_member(sample) == "jpg" and sample["cls"] == b"A1.Cls"


def test_a_sample_whose_members_are_apart_is_refused_naming_the_key(tmp_path):
    # `tar -cf s.tar *.jpg *.cls` puts every image first: each key became two samples, one without its label and one
    # without its image (as many bad samples as samples, or predictions without labels), with no word on why
    import pytest

    from mmlnb_dist.data.shardset import ShardError

    _tar(tmp_path / "s.tar", ["a.jpg", "b.jpg", "a.cls", "b.cls"])
    with pytest.raises(ShardError, match=r"s\.tar.*key 'a'.*a\.cls.*next to each other"):
        list(iter_shard_samples(tmp_path / "s.tar"))


def test_hidden_files_of_a_mac_packed_shard_are_not_samples(tmp_path):
    # macOS tar adds an AppleDouble `._a.jpg` before each file and may pack `.DS_Store`: webdataset skips names
    # without a stem; here they made samples with the empty key (and then "key '' appears again")
    _tar(tmp_path / "s.tar", ["./.DS_Store", "./._a.jpg", "./a.jpg", "./._a.cls", "./a.cls", "./._b.jpg", "./b.jpg",
                              "./b.cls"])
    samples = list(iter_shard_samples(tmp_path / "s.tar"))
    assert [(s["__key__"], s["jpg"]) for s in samples] == [("a", b"./a.jpg"), ("b", b"./b.jpg")]


def test_a_compressed_shard_is_refused_as_compressed_not_as_corrupt(tmp_path):
    # webdataset reads .tar.gz shards, so users pack them; the reader reads plain tars, and said "truncated or corrupt
    # tar at its start" of an intact gzip file (restore or rebuild: the wrong remedy)
    import pytest

    from mmlnb_dist.data.shardset import ShardError

    with tarfile.open(tmp_path / "s.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("a.jpg")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ShardError, match=r"s\.tar\.gz.* gzip-compressed.*plain.*gunzip"):
        list(iter_shard_samples(tmp_path / "s.tar.gz"))


def test_a_member_packed_twice_is_refused_naming_it(tmp_path):
    # `tar -rf s.tar a.jpg` appends a second a.jpg (the usual way to "replace" a file in a tar): the later bytes
    # silently won over the earlier; webdataset refuses a duplicate file name in a sample
    import pytest

    from mmlnb_dist.data.shardset import ShardError

    _tar(tmp_path / "s.tar", ["a.jpg", "a.cls", "a.jpg"])
    with pytest.raises(ShardError, match=r"s\.tar: key 'a' holds a\.jpg twice"):
        list(iter_shard_samples(tmp_path / "s.tar"))

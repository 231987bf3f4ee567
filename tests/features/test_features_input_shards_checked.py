"""Input shards that are not what the manifest says: a missing shard is refused before any feature is computed
(it was found only at its turn, after every shard before it was encoded), and a shard whose bytes differ from
its manifest entry (an image replaced in place, the same keys and count) is refused, not encoded and recorded
under the manifest's sha256 as if it were that shard."""
from __future__ import annotations

import io
import shutil
import tarfile

import pytest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from support.shards import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("shards"), per_class=2, max_per_shard=2, val_fraction=0.25)


@pytest.fixture
def shards(built, tmp_path):
    return shutil.copytree(built, tmp_path / "shards")


def extract(shards, out):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    return extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=DistEnv(), seed=0,
                            batch_size=4, loader_image_size=16, progress=False)


def shard_files(shards):
    from mmlnb_dist.data.shardset import ShardSet

    return [e["file"] for _, _, e in ShardSet.open(shards).entries()]


def test_a_missing_input_shard_is_refused_before_any_feature_is_computed(shards, tmp_path):
    from mmlnb_dist.data.shardset import ShardError

    last = shard_files(shards)[-1]
    (shards / last).unlink()
    with pytest.raises(ShardError, match=last):
        extract(shards, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.safetensors"))  # (a missing folder globs nothing)


def test_a_shard_changed_in_place_is_refused_not_encoded(shards, tmp_path):
    from mmlnb_dist.data.shardset import ShardError

    first = shards / shard_files(shards)[0]
    with tarfile.open(first) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    images = [data for m, data in members if m.name.endswith(".png")]
    assert len(images) >= 2
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for m, data in members:  # the first sample's image replaced by the second's: same keys, same count
            data = images[1] if data == images[0] else data
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    first.write_bytes(buffer.getvalue())
    with pytest.raises(ShardError, match=f"{first.name}.*sha256"):
        extract(shards, tmp_path / "out")
    assert not (tmp_path / "out" / first.with_suffix(".safetensors").name).exists()

"""`fusion.image_features` (or anything reading a features folder) given a file or the shard set itself: the
refusal says what the path is, instead of advising `features extract --out` onto a file or the shard set (which
that command refuses)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from support.shards import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("set"), per_class=2, max_per_shard=4, val_fraction=0.25)


def test_a_file_given_as_features_folder_is_called_a_file(tmp_path):
    from mmlnb_dist.features import FeaturesError, read_index

    path = tmp_path / "features.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(FeaturesError, match="is a file, not a folder of extracted features") as err:
        read_index(path)
    assert "--out" not in str(err.value)


def test_the_shard_set_given_as_features_folder_says_to_extract_from_it(shards):
    from mmlnb_dist.features import FeaturesError, read_index

    with pytest.raises(FeaturesError, match="is a shard set, not extracted features") as err:
        read_index(shards)
    assert f"--shards {shards}" in str(err.value) and f"--out {shards}" not in str(err.value)


def test_a_missing_folder_still_says_how_to_make_it(tmp_path):
    from mmlnb_dist.features import FeaturesError, read_index

    with pytest.raises(FeaturesError, match=f"run `mmlnb-dist features extract --out {tmp_path / 'f'}` first"):
        read_index(tmp_path / "f")

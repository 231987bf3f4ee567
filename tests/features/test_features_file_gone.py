"""A finished extraction whose per-shard file is gone or damaged since (deleted, copied half-way) is refused naming
the file and the command that redoes it, when a run reads the features: it was a `FileNotFoundError` / safetensors
traceback from `load_features`. The same `features extract` command redoes that file, and the features load."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.features import FeaturesError, extract_features, load_features
from mmlnb_dist.models.config import ImageEncoderConfig


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from support.shards import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("gone-shards"), per_class=2, max_per_shard=3, val_fraction=0.25)


def _extract(shards, out):
    return extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=DistEnv(), seed=0,
                            batch_size=4, loader_image_size=24, progress=False)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_missing_or_torn_feature_file_is_named_and_a_rerun_redoes_it(shards, tmp_path, damage):
    out = tmp_path / "feats"
    _extract(shards, out)
    whole = load_features(out)
    victim = sorted(out.glob("*.safetensors"))[0]
    if damage == "deleted":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:50])
    with pytest.raises(FeaturesError, match="features extract") as err:
        load_features(out)
    assert victim.name in str(err.value)
    assert _extract(shards, out)["processed_now"] > 0
    again = load_features(out)
    assert sorted(again) == sorted(whole) and all(bool((again[k] == whole[k]).all()) for k in whole)


def test_a_deleted_feature_file_is_found_with_the_index_before_any_work(shards, tmp_path):
    from mmlnb_dist.features import check_files_present

    out = tmp_path / "feats"
    _extract(shards, out)
    victim = sorted(out.glob("*.safetensors"))[-1]
    victim.unlink()
    with pytest.raises(FeaturesError, match="features extract") as err:
        check_files_present(out)  # what a fusion.image_features run checks with its config, before its run folder
    assert victim.name in str(err.value)

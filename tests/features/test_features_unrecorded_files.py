"""A features folder whose provenance.json is gone (deleted to "start over" with other settings) but whose shard
files remain: a rerun with another encoder must not skip those files as finished and record them as its own."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from support.shards import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("shards"), per_class=2, max_per_shard=3, val_fraction=0.25)


def extract(shards, out, seed):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    return extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=DistEnv(), seed=seed,
                            batch_size=4, loader_image_size=16, progress=False)


def test_files_of_an_unrecorded_run_are_recomputed_not_taken_as_this_runs(shards, tmp_path):
    from mmlnb_dist.features import load_features, read_record

    extract(shards, tmp_path / "old", seed=0)
    (tmp_path / "old" / "provenance.json").unlink()  # the shard files of seed 0's encoder stay
    result = extract(shards, tmp_path / "old", seed=1)  # another encoder (other random weights)
    reference = extract(shards, tmp_path / "fresh", seed=1)

    assert result["processed_now"] == reference["processed_now"]  # every shard encoded again
    assert read_record(tmp_path / "old")["identity"] == read_record(tmp_path / "fresh")["identity"]
    got, want = load_features(tmp_path / "old"), load_features(tmp_path / "fresh")
    assert sorted(got) == sorted(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key])


def test_a_rerun_with_the_same_settings_after_the_record_went_keeps_the_files(shards, tmp_path):
    from mmlnb_dist.features import load_features

    extract(shards, tmp_path / "out", seed=0)
    first = load_features(tmp_path / "out")
    (tmp_path / "out" / "provenance.json").unlink()
    again = extract(shards, tmp_path / "out", seed=0)
    assert again["processed_now"] == 0  # the files carry the same identity: nothing is encoded again
    second = load_features(tmp_path / "out")
    assert sorted(first) == sorted(second)
    for key in first:
        torch.testing.assert_close(first[key], second[key])

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


def test_a_rerun_killed_after_the_record_went_leaves_the_folder_unfinished_not_mixed(shards, tmp_path, monkeypatch):
    # The old index.json stayed: the folder read as finished with the new record and a mix of the new encoder's
    # first file and the old encoder's others (same width), and a run trained on it without a word.
    from mmlnb_dist.features import FeaturesError, read_index, store

    out = tmp_path / "out"
    extract(shards, out, seed=0)
    (out / "provenance.json").unlink()
    write, calls = store.write_shard_features, []

    def write_then_die(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # killed after the first shard of the new run
            raise KeyboardInterrupt
        write(path, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(store, "write_shard_features", write_then_die)
        with pytest.raises(KeyboardInterrupt):
            extract(shards, out, seed=1)
    with pytest.raises(FeaturesError, match="unfinished"):
        read_index(out)
    extract(shards, out, seed=1)  # the same command finishes it, with the new encoder's features only
    reference = extract(shards, tmp_path / "fresh", seed=1)
    assert reference["num_features"] == read_index(out)["num_features"]
    from mmlnb_dist.features import load_features

    got, want = load_features(out), load_features(tmp_path / "fresh")
    for key in want:
        torch.testing.assert_close(got[key], want[key])

"""A features folder whose provenance.json or index.json was cut short (a copy interrupted, a full disk): every
reader refuses it with a FeaturesError naming the file and what to do, instead of a JSONDecodeError traceback; a
cut index is rewritten by rerunning the extraction (its shard files are whole), and a cut record is never taken
for settings that match."""
from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    from support.shards import make_shard_set

    root = tmp_path_factory.mktemp("set")
    shards = make_shard_set(root, per_class=2, max_per_shard=4, val_fraction=0.25)
    extract(shards, root / "f")
    return shards, root / "f"


def extract(shards, out):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    return extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=DistEnv(), seed=0,
                            batch_size=4, loader_image_size=24, progress=False)


def cut(path):
    path.write_bytes(path.read_bytes()[:20])


def test_a_cut_index_is_named_and_a_rerun_rewrites_it(extracted, tmp_path):
    from mmlnb_dist.features import FeaturesError, load_features, read_index

    shards, done = extracted
    folder = tmp_path / "f"
    shutil.copytree(done, folder)
    whole = load_features(folder)
    cut(folder / "index.json")
    with pytest.raises(FeaturesError, match="index.json is damaged") as err:
        read_index(folder)
    assert str(folder) in str(err.value) and "rerun the same `mmlnb-dist features extract`" in str(err.value)
    assert extract(shards, folder)["processed_now"] == 0  # every shard file is whole: only the index is redone
    again = load_features(folder)
    assert sorted(again) == sorted(whole) and all((again[k] == whole[k]).all() for k in whole)


def test_a_cut_record_is_refused_by_readers_and_by_the_extraction(extracted, tmp_path):
    from mmlnb_dist.features import FeaturesError, read_record

    shards, done = extracted
    folder = tmp_path / "f"
    shutil.copytree(done, folder)
    cut(folder / "provenance.json")
    with pytest.raises(FeaturesError, match="provenance.json is damaged"):
        read_record(folder)
    before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    with pytest.raises(FeaturesError, match="provenance.json is damaged") as err:
        extract(shards, folder)
    assert "another --out" in str(err.value)
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir() if not p.name.startswith(".")) == \
        [b for b in before if not b[0].startswith(".")]

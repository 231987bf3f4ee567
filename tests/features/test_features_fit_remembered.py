"""Whether a features folder fits a shard set is decided by each check, from the files as they are: a process keeps
no memory of sets found fitting. Such a memory (keyed on the folder's path, its index and the manifest digest)
outlived the read locks of the run that made it, so a long-lived process (a pipeline, a reused Tune worker) went on
training a set on features of other images: extracted again into the same folder, or a shard replaced in place."""
from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture
def sources(tmp_path):
    """Under tmp_path: two synthetic patch folders of other images (`src`, `other`) and `desc2.jsonl`, other
    descriptions of `src`'s images."""
    from mmlnb_dist.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "src", n=24, size=32, n_slides=6, seed=0)
    make_synthetic_dataset(tmp_path / "other", n=24, size=32, n_slides=6, seed=1)
    lines = [json.loads(x) for x in (tmp_path / "src" / "descriptions.jsonl").read_text().splitlines() if x.strip()]
    (tmp_path / "desc2.jsonl").write_text("".join(json.dumps({**x, "description": "Again. " + x["description"]})
                                                  + "\n" for x in lines))


def _build(src, out, descriptions=None):
    from mmlnb_dist.config import BuildConfig
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import CLASSES

    cfg = BuildConfig(max_samples_per_shard=20, val_fraction=0.25, image_format="png", image_size=32, seed=0)
    build_shards(collect_samples(src, CLASSES, descriptions), out, cfg, CLASSES, progress=False)
    return out


def _extract(shards, out):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=DistEnv(), seed=0,
                     batch_size=16, image_size=32, progress=False)


def test_features_extracted_again_from_other_images_are_compared_again(tmp_path, sources):
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.features.store import FeaturesError, check_shards_fit

    first = _build(tmp_path / "src", tmp_path / "first")
    redescribed = ShardSet.open(_build(tmp_path / "src", tmp_path / "redescribed", tmp_path / "desc2.jsonl"))
    features = tmp_path / "features"
    _extract(first, features)
    check_shards_fit(features, redescribed)  # the same images, other descriptions: fits (compared image by image)

    shutil.rmtree(features)  # extracted again, into the same folder, from a set of other images
    _extract(_build(tmp_path / "other", tmp_path / "other_shards"), features)
    with pytest.raises(FeaturesError, match="images differ"):
        check_shards_fit(features, redescribed)


def test_a_shard_replaced_in_place_after_a_fitting_check_is_compared_again(tmp_path, sources):
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.features.store import FeaturesError, check_shards_fit

    features = tmp_path / "features"
    _extract(_build(tmp_path / "src", tmp_path / "first"), features)
    redescribed = _build(tmp_path / "src", tmp_path / "redescribed", tmp_path / "desc2.jsonl")
    other = _build(tmp_path / "other", tmp_path / "other_shards")
    check_shards_fit(features, ShardSet.open(redescribed))  # fits: the same images

    for tar in sorted(redescribed.glob("train-*.tar")):  # (manifest untouched: its digest is the same)
        shutil.copyfile(other / tar.name, tar)
    with pytest.raises(FeaturesError, match="features do not have|images differ"):
        check_shards_fit(features, ShardSet.open(redescribed))

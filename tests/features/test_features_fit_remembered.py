"""A process remembers which features folder fits which shard set (a run checks before any work and again once its
encoder is built, and the second look need not read every image again), but only for the extraction it compared:
features extracted again into the same folder from other images are compared again and refused. The memory was
keyed on the folder's path and the shard set, so a long-lived process (a pipeline, a reused Tune worker) went on
training a set on features of other images."""
from __future__ import annotations

import json
import shutil

import pytest


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


def test_features_extracted_again_from_other_images_are_compared_again(tmp_path):
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.data.synthetic import make_synthetic_dataset
    from mmlnb_dist.features.store import FeaturesError, check_shards_fit

    make_synthetic_dataset(tmp_path / "src", n=24, size=32, n_slides=6, seed=0)
    make_synthetic_dataset(tmp_path / "other", n=24, size=32, n_slides=6, seed=1)
    lines = [json.loads(x) for x in (tmp_path / "src" / "descriptions.jsonl").read_text().splitlines() if x.strip()]
    (tmp_path / "desc2.jsonl").write_text("".join(json.dumps({**x, "description": "Again. " + x["description"]})
                                                  + "\n" for x in lines))
    first = _build(tmp_path / "src", tmp_path / "first")
    redescribed = ShardSet.open(_build(tmp_path / "src", tmp_path / "redescribed", tmp_path / "desc2.jsonl"))
    features = tmp_path / "features"
    _extract(first, features)
    check_shards_fit(features, redescribed)  # the same images, other descriptions: fits (compared image by image)

    shutil.rmtree(features)  # extracted again, into the same folder, from a set of other images
    _extract(_build(tmp_path / "other", tmp_path / "other_shards"), features)
    with pytest.raises(FeaturesError, match="images differ"):
        check_shards_fit(features, redescribed)

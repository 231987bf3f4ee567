"""`fusion.image_features` extracted at a fixed-size encoder's own input size (what `features extract` does
without `--image-size`) for a run at another data.loader.image_size: the refusal's remedy must be one that works.
It advised only `features extract --image-size <loader size>`, which that command refuses for an encoder that
cannot take the size (uni2-h: 64 px is no multiple of its 14 px patches), and never data.loader.image_size at
the encoder's own size, which always fits."""
from __future__ import annotations

import pytest

from support.fusion import tiny_config

FROZEN = ["fusion.curriculum.phases=[{start_epoch: 0, train_image_encoder: false}]",
          "fusion.model.image_encoder.name=uni2-h-tiny", "fusion.model.image_encoder.pretrained=false"]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    from support.shards import make_shard_set

    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    root = tmp_path_factory.mktemp("set")
    shards = make_shard_set(root, per_class=2, max_per_shard=4, val_fraction=0.25)
    extract_features(ImageEncoderConfig(name="uni2-h-tiny", pretrained=False), shards, root / "f", env=DistEnv(),
                     seed=0, batch_size=4, progress=False)  # at the encoder's own 224 px
    return shards, root / "f"


def test_features_at_the_encoder_s_own_size_suggest_training_at_that_size(extracted, tmp_path):
    from mmlnb_dist.core.provenance import ProvenanceError
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.fusion.extracted import check_config

    shards, folder = extracted
    cfg = tiny_config(shards, tmp_path, "x", [*FROZEN, f"fusion.image_features={folder}"])  # loader at 64 px
    with pytest.raises(ProvenanceError, match=r"transform.image_size: 224 -> 64") as err:
        check_config(cfg, ShardSet.open(shards))
    assert "data.loader.image_size=224" in str(err.value)
    fitting = tiny_config(shards, tmp_path, "y", [*FROZEN, f"fusion.image_features={folder}",
                                                    "data.loader.image_size=224"])
    check_config(fitting, ShardSet.open(shards))  # the advice taken: the features fit

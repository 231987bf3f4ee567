"""Features reused on a re-described shard set (another manifest digest: the images are compared sample by sample,
from what each feature file recorded) with a feature file damaged since the extraction: the refusal names the file
and the rerun that redoes it, as loading the features does, instead of safetensors' bare header error."""
from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    from support.shards import make_shard_set

    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    root = tmp_path_factory.mktemp("set")
    shards = make_shard_set(root, per_class=2, max_per_shard=4, val_fraction=0.25)
    extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, root / "f", env=DistEnv(), seed=0,
                     batch_size=4, loader_image_size=24, progress=False)
    redescribed = root / "redescribed"  # the same tars, another manifest (its digest differs)
    shutil.copytree(shards, redescribed)
    manifest = json.loads((redescribed / "manifest.json").read_text())
    manifest["note"] = "descriptions rewritten"
    (redescribed / "manifest.json").write_text(json.dumps(manifest))
    return root / "f", redescribed


@pytest.mark.parametrize("damage", ["torn", "foreign"])
def test_a_damaged_feature_file_is_named_when_a_re_described_set_is_compared(extracted, tmp_path, damage):
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.features import FeaturesError, check_shards_fit

    folder = tmp_path / "f"
    shutil.copytree(extracted[0], folder)
    victim = sorted(folder.glob("*.safetensors"))[1]
    victim.write_bytes(victim.read_bytes()[:40] if damage == "torn" else b"not a safetensors file at all")
    with pytest.raises(FeaturesError) as err:
        check_shards_fit(folder, ShardSet.open(extracted[1]))
    assert str(victim) in str(err.value) and "rerun the same `mmlnb-dist features extract`" in str(err.value)

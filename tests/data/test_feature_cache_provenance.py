"""A saved frozen-feature table records what made it besides the encoder (the shard set's digest, the
preprocessing); loading it for other data is refused, naming what differs, instead of serving wrong features."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core.provenance import ProvenanceError
from mmlnb_dist.recipes.fusion.features import FeatureCache


def test_cache_made_for_another_shard_set_is_refused_naming_the_difference(tmp_path):
    made = {"shards_manifest_sha256": "aaa", "image_size": 64}
    cache = FeatureCache("image", "enc123", tmp_path, provenance=made)
    cache.put(["k1", "k2"], torch.ones(2, 3))
    cache.save()
    same = FeatureCache("image", "enc123", tmp_path, provenance=dict(made))
    assert same.load() and torch.equal(same.stacked(["k1", "k2"]), torch.ones(2, 3))
    other = FeatureCache("image", "enc123", tmp_path, provenance={**made, "shards_manifest_sha256": "bbb"})
    with pytest.raises(ProvenanceError, match=r"shards_manifest_sha256: 'aaa' -> 'bbb'") as err:
        other.load()
    assert str(cache.path) in str(err.value) and len(other) == 0
    legacy = FeatureCache("image", "enc123", tmp_path)  # no provenance given: loads as before
    assert legacy.load()

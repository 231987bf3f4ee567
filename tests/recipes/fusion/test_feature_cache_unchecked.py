"""A frozen-feature table whose origin cannot be checked is not served: one saved by a version that recorded no
provenance (the shard set's digest, the preprocessing) could be another shard set's features under the same keys,
and one that cannot be read back (copied half-way) is no table. Either is a cache miss, said in a warning naming
the file: the features are computed again and the file rewritten with its provenance, which then loads."""
from __future__ import annotations

import json
import logging

import torch
from safetensors.torch import save_file

from mmlnb_dist.recipes.fusion.features import FeatureCache

MADE = {"shards_manifest_sha256": "aaa", "image_size": 64}


def test_a_table_without_provenance_is_computed_again_not_served(tmp_path, caplog):
    cache = FeatureCache("image", "enc123", tmp_path, provenance=MADE)
    tmp_path.mkdir(exist_ok=True)
    # as versions before the provenance record wrote it: keys only (features of other images under these keys)
    save_file({"features": torch.full((2, 3), 9.0)}, str(cache.path), metadata={"keys": json.dumps(["k1", "k2"])})
    with caplog.at_level(logging.WARNING):
        assert cache.load() is False
    assert len(cache) == 0 and cache.loaded_from_disk is False
    assert str(cache.path) in caplog.text and "provenance" in caplog.text

    cache.put(["k1", "k2"], torch.ones(2, 3))  # computed again by the encoder, then saved with its provenance
    cache.save()
    again = FeatureCache("image", "enc123", tmp_path, provenance=dict(MADE))
    assert again.load() and torch.equal(again.stacked(["k1", "k2"]), torch.ones(2, 3))


def test_a_table_that_cannot_be_read_back_is_a_miss_with_a_warning(tmp_path, caplog):
    cache = FeatureCache("text", "t1", tmp_path, provenance={"shards_manifest_sha256": "aaa"})
    cache.put(["k1"], torch.ones(1, 2))
    cache.save()
    cache.path.write_bytes(cache.path.read_bytes()[:40])  # copied half-way
    fresh = FeatureCache("text", "t1", tmp_path, provenance={"shards_manifest_sha256": "aaa"})
    with caplog.at_level(logging.WARNING):
        assert fresh.load() is False
    assert len(fresh) == 0 and str(fresh.path) in caplog.text

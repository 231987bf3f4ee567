"""Audit of features/store.py: the feature record (identity of the encoder, weights, transform, shard set and
precision), reading shard files back, atomic writes, and when a folder is refused."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from mmlnb_dist.core.sections import DistributedConfig
from mmlnb_dist.features.store import (RANDOM_WEIGHTS, FeaturesError, feature_identity, finished_shard,
                                       read_index, read_shard_features, recorded_precision, run_precision,
                                       write_shard_features)


def _encoder(digest):
    return SimpleNamespace(name="tiny", source="tiny", weights_digest=digest, licence="Apache-2.0", out_dim=64,
                           mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), input_size=None)


_SHARDS = SimpleNamespace(digest="abc", entries=lambda: [("train", "a.tar", {"num_samples": 3}),
                                                         ("val", "b.tar", {"num_samples": "4"})])


def test_identity_of_loaded_weights_records_their_licence_normalisation_and_every_sample():
    """Loaded weights: pretrained, their licence; the transform holds mean AND std; samples summed over shards."""
    ident = feature_identity(_encoder("d1"), "d1", 32, _SHARDS, "fp32")
    assert ident["encoder"]["pretrained"] is True and ident["encoder"]["licence"] == "Apache-2.0"
    assert ident["transform"]["mean"] == [0.1, 0.2, 0.3] and ident["transform"]["std"] == [0.4, 0.5, 0.6]
    assert ident["shards"] == {"manifest_sha256": "abc", "num_samples": 7}
    assert ident["precision"] == "fp32"


def test_identity_of_random_weights_never_reads_as_pretrained():
    """A random encoder's features are recorded as random, not under the weights' licence."""
    ident = feature_identity(_encoder(None), "d0", 32, _SHARDS, "bf16")
    assert ident["encoder"]["pretrained"] is False and ident["encoder"]["licence"] == RANDOM_WEIGHTS


def test_recorded_precision_prefers_the_identity_and_falls_back_to_the_compute_dtype():
    """Old records (no identity.precision) tell the precision by compute.dtype; new ones by identity.precision."""
    assert recorded_precision({"identity": {}, "compute": {"dtype": "bfloat16-autocast"}}) == "bf16"
    assert recorded_precision({"identity": {}, "compute": {"dtype": "float32"}}) == "fp32"
    assert recorded_precision({"identity": {"precision": "fp16"}, "compute": {"dtype": "float32"}}) == "fp16"


def test_run_precision_follows_the_users_deepspeed_json(tmp_path):
    """A user's DeepSpeed config with bf16 enabled decides the precision over distributed.precision."""
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"bf16": {"enabled": True}}))
    assert run_precision(DistributedConfig(deepspeed_config=str(ds))) == "bf16"
    assert run_precision(DistributedConfig()) == DistributedConfig().precision


def _write(path, keys, features, sha="s1", skipped=()):
    write_shard_features(path, keys, features, shard_sha256=sha, skipped=list(skipped), split="train",
                         images={k: "0" * 64 for k in keys})


def test_a_file_with_more_rows_than_keys_is_refused_and_never_counted_finished(tmp_path):
    """Rows and keys must pair up: a file whose features do not match its keys reads as torn."""
    path = tmp_path / "a.safetensors"
    _write(path, ["k1"], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="1 keys"):
        read_shard_features(path)
    assert finished_shard(path, {"file": "a.tar", "sha256": "s1", "num_samples": 1}) is None


def test_a_finished_file_counts_skipped_samples_and_needs_the_same_shard(tmp_path):
    """Kept for the very shard (its sha256) when features + skipped make every sample; else redone."""
    path = tmp_path / "a.safetensors"
    features = torch.arange(6.0).view(2, 3)
    _write(path, ["k1", "k2"], features, skipped=[{"key": "k3", "error": "x"}])
    entry = {"file": "a.tar", "sha256": "s1", "num_samples": 3}
    assert finished_shard(path, entry)["num_features"] == 2
    assert finished_shard(path, {**entry, "sha256": "other"}) is None
    assert finished_shard(path, {**entry, "num_samples": 2}) is None
    keys, read, _ = read_shard_features(path)
    assert keys == ["k1", "k2"] and torch.equal(read, features)


def test_a_write_that_fails_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    """Atomic write: a rewrite that dies half-way leaves the file under the final name as it was."""
    import safetensors.torch

    path = tmp_path / "a.safetensors"
    _write(path, ["k1"], torch.ones(1, 3))

    def torn(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", torn)
    with pytest.raises(OSError):
        _write(path, ["k2"], torch.zeros(1, 3))
    keys, features, _ = read_shard_features(path)
    assert keys == ["k1"] and torch.equal(features, torch.ones(1, 3))


def test_a_folder_without_provenance_is_no_feature_folder_even_with_an_index(tmp_path):
    """An index without the record is refused (nothing says what made those features)."""
    (tmp_path / "index.json").write_text(json.dumps({"files": []}))
    with pytest.raises(FeaturesError, match="provenance.json missing"):
        read_index(tmp_path)


def test_features_read_back_do_not_change_when_the_file_is_overwritten_in_place(tmp_path):
    """The returned tensor is a copy, not a map of the file: writing over the file's bytes leaves it as read."""
    path = tmp_path / "a.safetensors"
    _write(path, ["k1", "k2"], torch.zeros(2, 8))
    _, features, _ = read_shard_features(path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size - 64)
        f.write(b"\x01" * 64)
    assert torch.equal(features, torch.zeros(2, 8))


def test_features_from_before_the_images_record_fit_only_their_own_shard_set(tmp_path):
    """Without `images_sha256` in the index, features of another shard set are refused (the images cannot be
    compared); the very set they came from still fits."""
    from mmlnb_dist.features.store import check_shards_fit

    record = {"identity": {"shards": {"manifest_sha256": "a" * 64, "num_samples": 1}}}
    (tmp_path / "provenance.json").write_text(json.dumps({"record": record}))
    (tmp_path / "index.json").write_text(json.dumps({"files": [{"file": "x.safetensors"}]}))
    other = SimpleNamespace(digest="b" * 64, manifest={}, root=tmp_path / "other")
    with pytest.raises(FeaturesError, match="before extractions recorded each sample's image"):
        check_shards_fit(tmp_path, other)
    check_shards_fit(tmp_path, SimpleNamespace(digest="a" * 64, manifest={}, root=tmp_path / "own"))

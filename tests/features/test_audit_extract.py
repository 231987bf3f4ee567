"""Audit of `features extract`: ranks take whole shards round-robin (every sample encoded once), a rerun keeps only
complete files of the very shard (a stale or foreign file is redone), the index refuses a missing shard or a key in
two files, and undecodable samples count against `max_bad_sample_rate` with its boundary included."""
from __future__ import annotations

import json

import pytest
import torch

SIZE = 24


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from support.shards import make_shard_set

    # 9 samples in 5 shards (4 train of at most 2, 1 val): more shards than the 3 ranks, and an uneven count.
    return make_shard_set(tmp_path_factory.mktemp("audit-shards"), per_class=3, max_per_shard=2, val_fraction=0.25)


def _entries(shards):
    from mmlnb_dist.data.shardset import ShardSet

    return ShardSet.open(shards).entries()


def _keys_of(shards, entry):
    from mmlnb_dist.data.reader import iter_shard_samples

    return [s["__key__"] for s in iter_shard_samples(shards / entry["file"])]


def _extract(shards, out, env=None, batch_size=2, **kw):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    return extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=env or DistEnv(),
                            seed=0, batch_size=batch_size, loader_image_size=SIZE, progress=False, **kw)


def test_three_ranks_take_whole_shards_round_robin_and_index_every_key_once(shards, tmp_path, monkeypatch):
    """Rank r encodes shards r, r + 3, ... and nothing else; rank 0's index holds every key exactly once."""
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract as extract_mod
    from mmlnb_dist.features import load_features, store

    others, wrote = [], {}
    monkeypatch.setattr(extract_mod, "init_process_group", lambda *a, **k: None)

    def gather(env, obj):  # ranks 1, 2 run first; rank 0 then gets their summaries as `all_gather_object` would
        if isinstance(obj, dict) and "summaries" in obj:
            if env.rank:
                others.append(obj)
                return [obj]
            return [obj, *others]
        return [obj]

    monkeypatch.setattr(extract_mod, "all_gather_object", gather)
    write = store.write_shard_features
    out = tmp_path / "f"
    out.mkdir()
    for rank in (1, 2, 0):
        def recording(path, *a, _rank=rank, **k):
            wrote.setdefault(_rank, []).append(path.name)
            return write(path, *a, **k)

        monkeypatch.setattr(store, "write_shard_features", recording)
        _extract(shards, out, env=DistEnv(rank=rank, world_size=3))
    entries = _entries(shards)
    for rank in range(3):
        assert wrote.get(rank, []) == [store.feature_file(out, e["file"]).name for _, _, e in entries[rank::3]]
    every = [k for _, _, e in entries for k in _keys_of(shards, e)]
    index = json.loads((out / "index.json").read_text())
    assert index["num_features"] == len(every) == 9 and sorted(load_features(out)) == sorted(every)


def _write(folder, shards, entry, keys, *, skipped=(), sha=None, split="train", dim=3):
    from mmlnb_dist.features import store

    path = store.feature_file(folder, entry["file"])
    store.write_shard_features(path, keys, torch.arange(len(keys) * dim, dtype=torch.float32).view(len(keys), dim),
                               shard_sha256=entry["sha256"] if sha is None else sha, skipped=list(skipped),
                               split=split, images={k: "0" * 64 for k in keys})
    return path


def test_a_finished_file_is_kept_only_for_the_very_shard_and_its_sample_count(shards, tmp_path):
    """`finished_shard`: a complete file of this shard is skipped on rerun; one made from another version of the
    shard (its SHA-256), with too few rows, torn, or without the image record is redone (None)."""
    from mmlnb_dist.features import store

    _, _, entry = _entries(shards)[0]
    keys = _keys_of(shards, entry)
    path = _write(tmp_path, shards, entry, keys)
    assert store.finished_shard(path, entry) == {"file": path.name, "shard": entry["file"],
                                                 "num_features": len(keys), "dim": 3, "skipped": []}
    skipped = [{"shard": entry["file"], "key": keys[-1], "reason": "bad"}]
    _write(tmp_path, shards, entry, keys[:-1], skipped=skipped)  # a skipped sample completes the count
    assert store.finished_shard(path, entry)["num_features"] == len(keys) - 1
    _write(tmp_path, shards, entry, keys[:-1])  # a row short
    assert store.finished_shard(path, entry) is None
    _write(tmp_path, shards, entry, keys, sha="f" * 64)  # another version of the shard
    assert store.finished_shard(path, entry) is None
    _write(tmp_path, shards, entry, keys)
    path.write_bytes(path.read_bytes()[:-7])  # torn
    assert store.finished_shard(path, entry) is None
    assert store.finished_shard(tmp_path / "absent.safetensors", entry) is None
    from safetensors.torch import save_file  # a file from before the image record: redone to record the images

    save_file({"features": torch.zeros(len(keys), 3)}, str(path), metadata={
        "format": store.FORMAT, "keys": json.dumps(keys), "skipped": "[]", "shard_sha256": entry["sha256"]})
    assert store.finished_shard(path, entry) is None


def _summaries(folder, shards, skip_key=None):
    """Feature files and summaries for every shard as ranks hand them to rank 0 (`skip_key`: listed as skipped)."""
    summaries = []
    for split, _, entry in _entries(shards):
        keys = _keys_of(shards, entry)
        skipped = [{"shard": entry["file"], "key": k, "reason": "not a readable image"} for k in keys if k == skip_key]
        keys = [k for k in keys if k != skip_key]
        path = _write(folder, shards, entry, keys, skipped=skipped, split=split)
        summaries.append({"file": path.name, "shard": entry["file"], "num_features": len(keys), "dim": 3,
                          "skipped": skipped})
    return summaries


RECORD = {"identity": {"encoder": {"name": "tiny"}}}


def test_the_index_lists_every_shard_in_manifest_order_with_counts(shards, tmp_path):
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.features.extract import _verify_and_index

    summaries = _summaries(tmp_path, shards)
    index = _verify_and_index(ShardSet.open(shards), tmp_path, summaries[::-1], RECORD, 0.0)
    assert [f["shard"] for f in index["files"]] == [e["file"] for _, _, e in _entries(shards)]
    assert (index["num_features"], index["num_skipped"], index["dim"], index["encoder"]) == (9, 0, 3, "tiny")
    assert json.loads((tmp_path / "index.json").read_text()) == index


def test_the_index_refuses_a_shard_without_features_and_a_key_in_two_files(shards, tmp_path):
    from mmlnb_dist.data.shardset import ShardError, ShardSet
    from mmlnb_dist.features.extract import _verify_and_index

    source = ShardSet.open(shards)
    summaries = _summaries(tmp_path, shards)
    with pytest.raises(ShardError, match="no features for input shards"):
        _verify_and_index(source, tmp_path, summaries[:-1], RECORD, 0.0)
    entries = _entries(shards)
    first, second = entries[0][2], entries[1][2]
    _write(tmp_path, shards, second, [_keys_of(shards, first)[0], *_keys_of(shards, second)[1:]])
    with pytest.raises(ShardError, match="extracted twice"):
        _verify_and_index(source, tmp_path, summaries, RECORD, 0.0)
    assert not (tmp_path / "index.json").exists()


def test_skipped_samples_count_against_every_planned_sample_with_the_limit_included(shards, tmp_path):
    """1 skipped of 9 samples passes at max_bad_sample_rate=1/9 exactly and is refused just below it."""
    from mmlnb_dist.data.ledger import BadSampleRateError
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.features.extract import _verify_and_index

    source = ShardSet.open(shards)
    bad = _keys_of(shards, _entries(shards)[1][2])[0]
    summaries = _summaries(tmp_path, shards, skip_key=bad)
    with pytest.raises(BadSampleRateError, match="1 bad samples of 9"):
        _verify_and_index(source, tmp_path, summaries, RECORD, 0.11)
    index = _verify_and_index(source, tmp_path, summaries, RECORD, 1 / 9)
    assert (index["num_features"], index["num_skipped"]) == (8, 1) and index["skipped"][0]["key"] == bad


def test_an_undecodable_sample_is_skipped_by_key_and_the_others_are_encoded(shards, tmp_path, monkeypatch):
    """The sample whose image does not decode (the second batch of its shard) is listed with its shard and key,
    absent from the features, and every other sample has its features. Over the rate the run fails but keeps its
    record and files: the rerun with a higher limit encodes nothing again."""
    from mmlnb_dist.data.ledger import BadSampleRateError
    from mmlnb_dist.data.preprocess import ImageSamplePreprocess
    from mmlnb_dist.features import load_features

    entries = _entries(shards)
    every = [k for _, _, e in entries for k in _keys_of(shards, e)]
    bad = _keys_of(shards, entries[2][2])[1]
    decode = ImageSamplePreprocess.decode

    def failing(self, raw, ctx):
        if raw["__key__"] == bad:
            raise ValueError("not a readable image")
        return decode(self, raw, ctx)

    monkeypatch.setattr(ImageSamplePreprocess, "decode", failing)
    out = tmp_path / "f"
    with pytest.raises(BadSampleRateError):
        _extract(shards, out, batch_size=1, max_bad_sample_rate=0.1)
    assert (out / "provenance.json").is_file() and len(list(out.glob("*.safetensors"))) == len(entries)
    result = _extract(shards, out, batch_size=1, max_bad_sample_rate=0.2)
    assert (result["num_features"], result["num_skipped"], result["processed_now"]) == (8, 1, 0)
    index = json.loads((out / "index.json").read_text())
    assert [(s["shard"], s["key"]) for s in index["skipped"]] == [(entries[2][2]["file"], bad)]
    assert sorted(load_features(out)) == sorted(k for k in every if k != bad)


def test_features_into_the_shard_set_folder_are_refused(shards):
    from mmlnb_dist.core.errors import UserError

    with pytest.raises(UserError, match="another folder than the shard set"):
        _extract(shards, shards)


def test_features_into_a_folder_inside_the_shard_set_are_refused(shards):
    """`shards build` into the set's folder replaces it whole: features written inside it were deleted by the next
    rebuild without a word."""
    from pathlib import Path

    from mmlnb_dist.core.errors import UserError

    inside = Path(shards) / "features"
    with pytest.raises(UserError, match=r"inside the shard set .*rebuild"):
        _extract(shards, inside)
    assert not inside.exists()

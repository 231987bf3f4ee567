"""A shard set with one truncated shard among good ones: `predict` stopped reading the set at the broken shard, so
the samples of every shard after it (and those of the broken one before its cut) were never predicted, and the
only line said the whole set was unreadable ("nothing to predict" when the broken shard came first). Now the
broken shard is reported under its own path, its samples up to the cut and every other shard are predicted."""
from __future__ import annotations

import json

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.predict_stand_in import StandIn
from support.shards import make_shard_set


def _cut(tar, keep_samples):
    """Truncate `tar` inside the member group after `keep_samples` complete samples."""
    import tarfile

    with tarfile.open(tar) as t:
        members = t.getmembers()
    keys = list(dict.fromkeys(m.name.split(".")[0] for m in members))
    first_of_next = next(m for m in members if m.name.split(".")[0] == keys[keep_samples])
    with open(tar, "r+b") as fh:
        fh.truncate(first_of_next.offset_data + 10)  # inside the next sample's first member
    return keys[:keep_samples], keys[keep_samples:]


def test_a_truncated_shard_loses_only_what_follows_its_cut(tmp_path, monkeypatch):
    shards = make_shard_set(tmp_path, per_class=6, max_per_shard=5, val_fraction=0.0)
    manifest = json.loads((shards / "manifest.json").read_text())
    files = [s["file"] for s in manifest["splits"]["train"]["shards"]]
    assert len(files) >= 3, files
    kept, lost = _cut(shards / files[0], 2)
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    out = tmp_path / "p.csv"
    report = predict_to_file("models:/stand-in@champion", [shards], out)
    total = manifest["splits"]["train"]["num_samples"]
    assert report["predicted"] == total - len(lost), report
    [(source, reason)] = report["failed"]
    assert source == str(shards / files[0]) and "truncated" in reason and "2 sample" in reason, report["failed"]
    assert (tmp_path / "p.skipped.csv").is_file()


def test_a_sample_named_after_the_cut_is_told_why(tmp_path):
    """`<tar>:<key>` of a sample past the cut: one failure, the shard's cut, not "no sample" as if it never was."""
    from mmlnb_dist.predict.inputs import collect_inputs

    shards = make_shard_set(tmp_path, per_class=6, max_per_shard=5, val_fraction=0.0)
    tar = sorted(shards.glob("train-*.tar"))[0]
    kept, lost = _cut(tar, 2)
    items, failed = collect_inputs([f"{tar}:{kept[0]}", f"{tar}:{lost[-1]}"])
    assert [it["sample_key"] for it in items] == [kept[0]]
    assert len(failed) == 1 and failed[0][0] == f"{tar}:{lost[-1]}" and "truncated" in failed[0][1], failed

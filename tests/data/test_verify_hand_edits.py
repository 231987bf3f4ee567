"""`shards verify` on a shard set changed by hand: a manifest entry lacking a field and a renamed shard are each
reported as a problem line with its remedy (they raised a KeyError traceback / were two unrelated lines)."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.data.verify import verify_shards

from support.shards import make_shard_set


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_shard_set(tmp_path_factory.mktemp("set"), per_class=2, max_per_shard=3, val_fraction=0.0)


@pytest.mark.parametrize("field", ["file", "num_samples", "class_counts"])
def test_a_manifest_entry_lacking_a_field_is_a_problem_line_not_a_traceback(built, field):
    original = (built / "manifest.json").read_text()
    manifest = json.loads(original)
    first = manifest["splits"]["train"]["shards"][0]
    name = first["file"]
    del first[field]
    (built / "manifest.json").write_text(json.dumps(manifest))
    try:
        problems = verify_shards(built, progress=False).problems
    finally:
        (built / "manifest.json").write_text(original)
    where = "split train shard #0" if field == "file" else name
    assert problems[0] == (f"manifest {where}: field(s) {field} missing or of the wrong type; rebuild the shard set "
                           f"or restore its manifest.json")
    # the other shards are still checked, and found right
    assert not any(p.startswith(manifest["splits"]["train"]["shards"][1]["file"]) for p in problems)
    assert verify_shards(built, progress=False).problems == []


def test_a_renamed_shard_is_named_with_its_new_name_and_the_remedy(built):
    manifest = json.loads((built / "manifest.json").read_text())
    name = manifest["splits"]["train"]["shards"][1]["file"]
    (built / name).rename(built / "copy.tar")
    try:
        problems = verify_shards(built, progress=False).problems
    finally:
        (built / "copy.tar").rename(built / name)
    assert f"{name}: missing, but copy.tar holds its exact bytes (sha256): rename copy.tar back to {name}" in problems
    assert not any(p.startswith("copy.tar") for p in problems)


def test_a_stray_tar_beside_a_missing_shard_is_still_named_as_stray(built):
    manifest = json.loads((built / "manifest.json").read_text())
    name = manifest["splits"]["train"]["shards"][1]["file"]
    (built / name).rename(built / "held.tar")
    (built / "stray.tar").write_bytes(b"\0" * 1024)
    try:
        problems = verify_shards(built, progress=False).problems
    finally:
        (built / "held.tar").rename(built / name)
        (built / "stray.tar").unlink()
    assert "stray.tar: tar file not listed in the manifest" in problems
    assert f"{name}: missing, but held.tar holds its exact bytes (sha256): rename held.tar back to {name}" in problems

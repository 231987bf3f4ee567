"""Audit of `map_shard_set` (mutation audit): skipped samples across a stopped and resumed run, the bad-sample
budget stopping the work at once, the guards on the input shards and on `fn`'s answers, what the output manifest
keeps from its input, and `restart` keeping the lock."""
from __future__ import annotations

import json

import pytest
from support.shards import CLASSES, make_shard_set, specs_for, write_patch_folder

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.runlock import FolderInUseError, FolderLock
from mmlnb_dist.data.build import build_shards
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.ledger import BadSampleRateError
from mmlnb_dist.data.map import SkipSample, clear_output, map_shard_set
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError, ShardSet
from mmlnb_dist.data.writer import write_tar_shard


def _source(tmp_path):
    """12 samples: train shards of 4, 4 and 1 samples, one val shard of 3."""
    return ShardSet.open(make_shard_set(tmp_path, per_class=4, max_per_shard=4, val_fraction=0.25, size=16))


def _text(batch):
    return [{"txt": "seen " + s["__key__"]} for s in batch]


def _skip_first(batch):
    """Skips the first sample of every batch (batches start at fixed offsets, so a rerun skips the same ones)."""
    return [SkipSample("unusable") if i == 0 else {"txt": "seen " + s["__key__"]} for i, s in enumerate(batch)]


def _tars(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


def test_a_run_stopped_after_skips_resumes_to_the_output_and_skip_list_of_an_uninterrupted_one(tmp_path):
    """Skips of a shard finished before the stop and of a journaled batch of the unfinished shard both stay
    listed; the resumed run calls `fn` only for the rest and reports that number as processed."""
    src = _source(tmp_path)
    kw = dict(env=DistEnv(), batch_size=2, progress=False, max_bad_sample_rate=0.6)
    ref = map_shard_set(src, tmp_path / "ref", _skip_first, **kw)
    assert len(ref["skipped"]) == 7  # 2 + 2 + 1 train batches' firsts, 2 val batches' firsts

    calls = [0]

    def stopping(batch):
        calls[0] += 1
        if calls[0] == 4:  # shard 0 finished (2 batches), shard 1: first batch journaled
            raise RuntimeError("stopped")
        return _skip_first(batch)

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="stopped"):
        map_shard_set(src, out, stopping, **kw)
    seen = []

    def recording(batch):
        seen.extend(s["__key__"] for s in batch)
        return _skip_first(batch)

    resumed = map_shard_set(src, out, recording, **kw)
    assert len(seen) == 12 - 4 - 2 and resumed["processed_now"] == len(seen)
    assert resumed["skipped"] == ref["skipped"] and resumed["num_samples"] == ref["num_samples"] == 12 - 7
    assert _tars(out) == _tars(tmp_path / "ref")
    manifests = [json.loads((folder / "manifest.json").read_text()) for folder in (out, tmp_path / "ref")]
    assert manifests[0] == manifests[1]


def test_the_bad_sample_budget_stops_the_run_at_the_batch_that_exceeds_it(tmp_path):
    src = _source(tmp_path)
    calls = [0]

    def skip_all(batch):
        calls[0] += 1
        return [SkipSample("unusable") for _ in batch]

    with pytest.raises(BadSampleRateError):
        map_shard_set(src, tmp_path / "out", skip_all, env=DistEnv(), batch_size=2, progress=False,
                      max_bad_sample_rate=0.1)  # 2 of 12 after the first batch
    assert calls[0] == 1


def test_an_input_shard_holding_fewer_samples_than_its_manifest_entry_stops_the_run(tmp_path):
    """A shard cut cleanly between two samples reads as a shorter shard: mapped as it is, the output would drop
    samples and still pass the exactly-once check (which reads the same short input)."""
    src = _source(tmp_path)
    first = src.root / src.entries()[0][2]["file"]
    write_tar_shard(first, list(iter_shard_samples(first))[:3], CLASSES)
    with pytest.raises(ShardError, match=r"train-000000\.tar holds 3 samples, its manifest entry says 4"):
        map_shard_set(src, tmp_path / "out", _text, env=DistEnv(), batch_size=2, progress=False)


@pytest.mark.parametrize("extra", [-1, 1])
def test_a_function_returning_the_wrong_number_of_results_is_an_error(tmp_path, extra):
    src = _source(tmp_path)

    def wrong(batch):
        return _text(batch + batch[:1]) if extra > 0 else _text(batch[:-1])

    with pytest.raises(RuntimeError, match=f"returned {2 + extra} results for a batch of 2"):
        map_shard_set(src, tmp_path / "out", wrong, env=DistEnv(), batch_size=2, progress=False)


def test_the_output_manifest_keeps_the_inputs_skipped_list_and_provenance(tmp_path):
    src_dir = write_patch_folder(tmp_path / "src", per_class=4, size=16)
    (src_dir / "UD" / "UD_001.png").write_bytes(b"not an image")
    build = BuildConfig(image_format="png", image_size=16, max_skipped_rate=0.2)
    build_shards(specs_for(src_dir), tmp_path / "shards", build, CLASSES, provenance={"built": {"by": "audit"}},
                 progress=False)
    src = ShardSet.open(tmp_path / "shards")
    result = map_shard_set(src, tmp_path / "out", _skip_first, env=DistEnv(), batch_size=4, progress=False,
                           max_bad_sample_rate=0.5, provenance={"mapped": {"v": 1}})
    manifest = ShardSet.open(tmp_path / "out").manifest
    assert manifest["skipped"][0] == src.manifest["skipped"][0] and manifest["skipped"][0]["key"] == "UD_001"
    assert [s for s in manifest["skipped"] if s.get("stage") == "map"] == \
        [{"stage": "map", **s} for s in result["skipped"]] and result["skipped"]
    assert manifest["provenance"] == {"built": {"by": "audit"}, "mapped": {"v": 1}}


def test_starting_over_keeps_the_lock_of_the_job_that_holds_the_folder(tmp_path):
    """`restart` clears the output while its job holds it: deleting the lock file as well would let a second job
    lock a new file and write the same folder."""
    src = _source(tmp_path)
    out = tmp_path / "out"
    map_shard_set(src, out, _text, env=DistEnv(), batch_size=4, progress=False)
    with FolderLock(out, "map"):
        clear_output(out)
        assert not list(out.glob("*.tar")) and not (out / "manifest.json").exists()
        with pytest.raises(FolderInUseError):
            FolderLock(out, "another map").acquire()


@pytest.mark.parametrize("restart", [False, True])
def test_an_output_folder_holding_another_shard_set_is_refused_and_left_as_it_was(tmp_path, restart):
    """`--out` naming a built shard set by mistake: its shards were taken for finished outputs of the same names
    and its manifest rewritten before the exactly-once check failed (a mixed, relabelled shard set), and
    `restart` deleted it whole (its files are all kinds a map output holds). A recorded run refuses a folder that
    holds shards or a manifest but no record of a run."""
    src = _source(tmp_path / "a")
    other = make_shard_set(tmp_path / "b", per_class=5, max_per_shard=4, size=24)
    before = {p.name: p.read_bytes() for p in sorted(other.iterdir()) if p.is_file()}
    with pytest.raises(ShardError, match="refusing"):
        map_shard_set(src, other, _text, env=DistEnv(), batch_size=2, progress=False, record={"made": "by test"},
                      restart=restart)
    assert {p.name: p.read_bytes() for p in sorted(other.iterdir()) if p.is_file()} == before


def test_a_rerun_of_a_finished_output_with_skips_keeps_them_and_passes_the_exactly_once_check(tmp_path):
    """The finished run removes its journal folder with the per-shard skip lists; a rerun (describe again into
    its finished output) took the finished shards as skipping nothing, and its exactly-once check then failed on
    the keys the first run had skipped ("does not match its input: 2 missing"), and the skip list was lost."""
    src = _source(tmp_path)
    kw = dict(env=DistEnv(), batch_size=2, progress=False, max_bad_sample_rate=0.6)
    first = map_shard_set(src, tmp_path / "out", _skip_first, **kw)
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    calls = []
    again = map_shard_set(src, tmp_path / "out", lambda batch: calls.append(batch) or _skip_first(batch), **kw)
    assert not calls and again["processed_now"] == 0
    assert again["skipped"] == first["skipped"] and again["num_samples"] == first["num_samples"] == 12 - 7
    assert (tmp_path / "out" / "manifest.json").read_text() == manifest


def test_a_batch_journaled_after_a_torn_line_is_not_done_again(tmp_path):
    """A kill mid-write leaves a torn last journal line; the resumed run appended its batches right after it, on
    the same line, so the run after that read neither (the journal stops at the first bad line) and did those
    batches again: every stop after a torn write lost all the work since. The torn tail is dropped first."""
    src = _source(tmp_path)
    out = tmp_path / "out"
    kw = dict(env=DistEnv(), batch_size=1, progress=False)
    seen = []

    def stopping_at(n):
        def fn(batch):
            seen.append(batch[0]["__key__"])
            if len(seen) == n:
                raise RuntimeError("stopped")
            return _text(batch)
        return fn

    with pytest.raises(RuntimeError):
        map_shard_set(src, out, stopping_at(2), **kw)  # the first sample of shard 0 journaled
    journal = next((out / ".progress").glob("*.jsonl"))
    with open(journal, "a") as f:
        f.write('{"key": "torn", "mem')  # killed in the middle of a line
    with pytest.raises(RuntimeError):
        map_shard_set(src, out, stopping_at(4), **kw)  # the 2nd sample (after the torn line), then stopped
    done_before = seen[0], seen[2]
    seen.clear()
    map_shard_set(src, out, stopping_at(-1), **kw)
    assert not set(done_before) & set(seen), (done_before, seen)


def test_a_run_resumed_at_a_larger_batch_size_maps_only_the_samples_not_journaled(tmp_path):
    """Stopped with one batch of 2 journaled, continued with batches of 4 (describe allows the batch size to change
    on resume): the partly done batch of 4 is given only its 2 undone samples, `processed_now` is what `fn` was
    given, and the output is an uninterrupted run's. The whole batch was mapped again (a VLM describing done
    images twice) and each journaled key written twice to the journal."""
    src = _source(tmp_path)
    map_shard_set(src, tmp_path / "ref", _text, env=DistEnv(), batch_size=4, progress=False)
    calls = [0]

    def stopping(batch):
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("stopped")
        return _text(batch)

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="stopped"):
        map_shard_set(src, out, stopping, env=DistEnv(), batch_size=2, progress=False)
    seen = []

    def recording(batch):
        seen.extend(s["__key__"] for s in batch)
        return _text(batch)

    resumed = map_shard_set(src, out, recording, env=DistEnv(), batch_size=4, progress=False)
    assert len(seen) == len(set(seen)) == 12 - 2 and resumed["processed_now"] == len(seen)
    assert _tars(out) == _tars(tmp_path / "ref")

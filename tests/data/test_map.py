"""`map_shard_set`: shard set in -> shard set out, atomic per shard, resumable after a SIGKILL, exactly once.

A killed run is restarted and must (1) not call the function again for batches it had finished, (2) produce
the same bytes as a run that was never interrupted, and (3) hold every input key exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.data.map import PROGRESS_DIR, map_shard_set, read_progress
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError, ShardSet
from support.shards import make_shard_set

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, json, time
from pathlib import Path
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.data.map import map_shard_set
from mmlnb_dist.data.shardset import ShardSet

src, out, log, block_at = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
calls = 0

def fn(batch):
    global calls
    calls += 1
    with open(log, "a") as f:
        f.write(json.dumps([s["__key__"] for s in batch]) + "\\n")
    if calls == block_at:
        time.sleep(3600)  # the parent kills us here, in the middle of this batch
    return [{"txt": "seen " + s["__key__"]} for s in batch]

map_shard_set(ShardSet.open(src), out, fn, env=DistEnv(), batch_size=4, progress=False)
"""


def _describe(batch):
    return [{"txt": "seen " + s["__key__"], "json": {"mapped": True}} for s in batch]


def _tree_bytes(folder: Path):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


def test_killed_map_resumes_without_redoing_finished_batches_and_matches_an_uninterrupted_run(tmp_path):
    src = ShardSet.open(make_shard_set(tmp_path, per_class=8, max_per_shard=10))
    reference = map_shard_set(src, tmp_path / "ref", _describe_txt_only, env=DistEnv(), batch_size=4, progress=False)

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log, out = tmp_path / "calls.jsonl", tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    child = subprocess.Popen([sys.executable, str(script), str(src.root), str(out), str(log), "3"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while (not log.is_file() or len(log.read_text().splitlines()) < 3) and child.poll() is None:
        assert time.time() < deadline, "the child never reached its third batch"
        time.sleep(0.05)
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    child.send_signal(signal.SIGKILL)
    child.wait()

    first_shard = src.entries()[0][2]["file"]
    journal = read_progress(out / PROGRESS_DIR / f"{first_shard}.jsonl")
    done_before = [json.loads(line) for line in log.read_text().splitlines()][:2]
    assert set(journal) == {k for batch in done_before for k in batch}  # two finished batches, journaled
    assert not (out / first_shard).exists() and not (out / "manifest.json").exists()

    seen = []

    def recording(batch):
        seen.extend(s["__key__"] for s in batch)
        return _describe_txt_only(batch)

    resumed = map_shard_set(src, out, recording, env=DistEnv(), batch_size=4, progress=False)
    all_keys = [s["__key__"] for _, _, e in src.entries() for s in iter_shard_samples(src.root / e["file"])]
    assert sorted(seen) == sorted(set(all_keys) - set(journal))  # finished batches were not redone
    assert resumed["num_samples"] == reference["num_samples"] == len(all_keys)
    assert _tree_bytes(out) == _tree_bytes(tmp_path / "ref")
    assert json.loads((out / "manifest.json").read_text())["splits"] == \
        json.loads((tmp_path / "ref" / "manifest.json").read_text())["splits"]
    assert not (out / PROGRESS_DIR).exists()


def _describe_txt_only(batch):
    return [{"txt": "seen " + s["__key__"]} for s in batch]


def test_output_keeps_every_member_and_records_provenance(tmp_path):
    src = ShardSet.open(make_shard_set(tmp_path, per_class=5, max_per_shard=4))
    result = map_shard_set(src, tmp_path / "out", _describe, env=DistEnv(), batch_size=3, progress=False,
                           provenance={"mapper": {"version": 1}}, has_descriptions=True)
    out = ShardSet.open(tmp_path / "out")
    assert out.provenance["mapper"] == {"version": 1} and out.has_descriptions
    for (_, _, a), (_, _, b) in zip(src.entries(), out.entries()):
        assert a["file"] == b["file"] and a["num_samples"] == b["num_samples"]
        assert a["class_counts"] == b["class_counts"]
        for x, y in zip(iter_shard_samples(src.root / a["file"]), iter_shard_samples(out.root / b["file"])):
            assert x["__key__"] == y["__key__"] and x["png"] == y["png"] and x["cls"] == y["cls"]
            assert y["txt"].decode() == f"seen {x['__key__']}" and json.loads(y["json"]) == {"mapped": True}
    assert result["num_samples"] == sum(src.num_samples(s) for s in src.manifest["splits"])
    # a second run finds every shard final and calls nothing
    again = map_shard_set(src, tmp_path / "out", lambda b: pytest.fail("called again"), env=DistEnv(),
                          batch_size=3, progress=False)
    assert again["processed_now"] == 0


def test_output_must_differ_from_input(tmp_path):
    src = ShardSet.open(make_shard_set(tmp_path, per_class=3))
    with pytest.raises(ShardError, match="must differ"):
        map_shard_set(src, src.root, _describe, env=DistEnv(), batch_size=2, progress=False)


def test_restart_deletes_the_callers_reports_and_refuses_a_folder_with_other_files(tmp_path):
    """A finished output holds the caller's report beside the shards (describe's quality report): `restart` may
    delete the files the caller names as its reports, and nothing else a user may have put there."""
    src = ShardSet.open(make_shard_set(tmp_path, per_class=3))
    out = tmp_path / "out"
    map_shard_set(src, out, _describe, env=DistEnv(), batch_size=2, progress=False)
    (out / "report.json").write_text("{}")
    with pytest.raises(ShardError, match=r"refusing to start over in .*out: it holds report\.json"):
        map_shard_set(src, out, _describe, env=DistEnv(), batch_size=2, progress=False, restart=True)
    assert (out / "report.json").is_file() and ShardSet.open(out).num_samples("train") > 0
    again = map_shard_set(src, out, _describe, env=DistEnv(), batch_size=2, progress=False, restart=True,
                          reports=("report.json",))
    assert again["processed_now"] == sum(src.num_samples(s) for s in src.manifest["splits"])
    assert not (out / "report.json").exists()

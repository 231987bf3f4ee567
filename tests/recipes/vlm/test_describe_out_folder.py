"""`describe --out` names a new shard set: the input folder itself was refused as "being read by `describe` (pid
N)", naming the user's own run as another job to wait for, a file there was a FileExistsError traceback from the
folder lock, and a folder holding the user's own files was written into, the shard set mixed in among them (only
`--restart` refused it). All are refused before any work, naming --out and what to give instead."""
from __future__ import annotations

import pytest

from support.cli import run_cli
from support.vlm import ROOT, make_pairs

PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("describe_out") / "pairs", n=6)


def _describe(pairs, out, tmp_path):
    return run_cli(["describe", "--config", PROFILE, "--vlm", "tiny", "--shards", str(pairs), "--out", str(out),
                    f"run.output_dir={tmp_path / 'runs'}", f"vlm.cache_dir={tmp_path / 'cache'}",
                    "vlm.tiny_vision=random", "vlm.generation.max_new_tokens=2", "tracking.backends=[stdout]",
                    "data.loader.num_workers=0"])


def test_the_input_shard_set_as_out_is_refused_naming_both_flags(pairs, tmp_path):
    before = sorted(p.name for p in pairs.iterdir())
    for out in (pairs, pairs / ".." / pairs.name):
        code, _, err = _describe(pairs, out, tmp_path)
        assert code == 2, err[-2000:]
        last = err.strip().splitlines()[-1]
        assert "--out" in last and "--shards" in last and "pid" not in last, last
    assert sorted(p.name for p in pairs.iterdir()) == before
    assert not (tmp_path / "cache").exists()  # refused before the model was looked up


def test_a_file_as_out_is_refused_without_a_traceback(pairs, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    code, _, err = _describe(pairs, out, tmp_path)
    assert code == 2 and "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"--out {out}" in last and "file" in last, last
    assert out.read_text() == "mine\n"


def test_a_folder_holding_other_files_is_refused_and_left_as_it_was(pairs, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    code, _, err = _describe(pairs, out, tmp_path)
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"--out {out}" in last and "notes.txt" in last, last
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

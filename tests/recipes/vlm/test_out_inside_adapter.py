"""An `--out` inside the `--adapter` folder: `export-vlm` built the merged model in there and `describe` wrote its
shard set in there, and the adapter's fingerprint (`adapter_sha256`, a digest of every file under its folder) changed
with them: the merged model's record named a digest no adapter has, and a describe run continuing its output, or
`predict` matching a classifier to the adapter's descriptions, met "another adapter". Both refuse it before any work,
naming both folders."""
from __future__ import annotations

import pytest

from support.cli import run_cli
from support.vlm import ROOT, make_pairs

PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


@pytest.fixture
def adapter(tmp_path):
    folder = tmp_path / "run" / "adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_export_into_the_adapter_folder_is_refused_naming_both(adapter, tmp_path):
    out = adapter / "merged"
    code, _, err = run_cli(["export-vlm", "--base", "tiny", "--adapter", str(adapter), "--out", str(out),
                            "--config", "cpu-demo", f"vlm.cache_dir={tmp_path / 'cache'}"])
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"--out {out}" in last and f"--adapter {adapter}" in last and "Traceback" not in err, last
    assert _files(adapter) == ["adapter_config.json"]
    assert not (tmp_path / "cache").exists()  # refused before the model was built


def test_describe_into_the_adapter_folder_is_refused_naming_both(adapter, tmp_path):
    pairs = make_pairs(tmp_path / "pairs", n=6)
    out = adapter / "described"
    code, _, err = run_cli(["describe", "--config", PROFILE, "--vlm", "tiny", "--adapter", str(adapter),
                            "--shards", str(pairs), "--out", str(out), f"run.output_dir={tmp_path / 'runs'}",
                            f"vlm.cache_dir={tmp_path / 'cache'}", "vlm.generation.max_new_tokens=2",
                            "tracking.backends=[stdout]", "data.loader.num_workers=0"])
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"--out {out}" in last and f"--adapter {adapter}" in last and "Traceback" not in err, last
    assert _files(adapter) == ["adapter_config.json"]
    assert not (tmp_path / "cache").exists()

"""`describe --vlm MERGED --adapter ADAPTER` and `export-vlm --base MERGED --adapter ADAPTER`: a merged export
(`export-vlm`) already holds its adapter, and loading an adapter onto it applies LoRA a second time. On a base with
another name than the adapter's (a hub model under a local folder name) that was only a warning and the text came
from base + 2 x LoRA (describe: credited to the adapter; export-vlm: saved as a model of that adapter); on the tiny
base the refusal blamed vlm.tiny_seed. Refused before any work, naming both flags and what to give."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.config import load_config

from support.cli import run_cli
from support.vlm import ROOT, make_pairs, write_random_adapter

PIX = 56 * 56
PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """(overrides, adapter, merged export of it); the adapter then shows a hub base name, as one trained on a hub
    model does (any base name but the merged folder's)."""
    from mmlnb_dist.recipes.vlm.merge import merge_and_export

    root = tmp_path_factory.mktemp("merged")
    overrides = [f"vlm.cache_dir={root / 'cache'}", "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}",
                 f"vlm.max_pixels={PIX}", "vlm.generation.max_new_tokens=2", "data.loader.num_workers=0",
                 f"run.output_dir={root / 'runs'}", "tracking.backends=[stdout]"]
    vcfg = load_config(PROFILE, overrides).vlm
    adapter = write_random_adapter(vcfg, root / "run" / "adapter", seed=0, pixels=PIX)
    model = merge_and_export("tiny", adapter, root / "merged", min_pixels=PIX, max_pixels=PIX,
                             cache_dir=vcfg.cache_dir, tiny_vision="random")
    config = adapter / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()),
                                  "base_model_name_or_path": "Qwen/Qwen2.5-VL-7B-Instruct"}))
    return overrides, adapter, model


def test_describe_on_a_merged_model_with_an_adapter_is_refused_naming_both_flags(merged, tmp_path):
    overrides, adapter, model = merged
    pairs = make_pairs(tmp_path / "pairs", n=3, val_fraction=0.0)
    out = tmp_path / "described"
    code, _, err = run_cli(["describe", "--config", PROFILE, "--vlm", str(model), "--adapter", str(adapter),
                            "--shards", str(pairs), "--out", str(out), *overrides])
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"--vlm {model}" in last and f"--adapter {adapter}" in last and "export-vlm" in last, last
    assert not out.exists()


def test_export_of_a_merged_model_with_an_adapter_is_refused_naming_both_flags(merged, tmp_path):
    overrides, adapter, model = merged
    out = tmp_path / "merged-twice"
    code, _, err = run_cli(["export-vlm", "--config", PROFILE, "--base", str(model), "--adapter", str(adapter),
                            "--out", str(out), *overrides])
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"--base {model}" in last and f"--adapter {adapter}" in last and "export-vlm" in last, last
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []

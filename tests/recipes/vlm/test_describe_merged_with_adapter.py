"""`describe --vlm MERGED --adapter ADAPTER`: a merged export (`export-vlm`) already holds its adapter, and loading
an adapter onto it applies LoRA a second time. On a base with another name than the adapter's (a hub model under a
local folder name) that was only a warning and the text came from base + 2 x LoRA, credited to the adapter; on the
tiny base the refusal blamed vlm.tiny_seed. Refused before any work, naming both flags and what to give."""
from __future__ import annotations

import json

from mmlnb_dist.config import load_config

from support.cli import run_cli
from support.vlm import ROOT, make_pairs, write_random_adapter

PIX = 56 * 56
PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


def test_a_merged_model_with_an_adapter_is_refused_naming_both_flags(tmp_path):
    from mmlnb_dist.recipes.vlm.merge import merge_and_export

    overrides = [f"vlm.cache_dir={tmp_path / 'cache'}", "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}",
                 f"vlm.max_pixels={PIX}", "vlm.generation.max_new_tokens=2", "data.loader.num_workers=0",
                 f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]"]
    vcfg = load_config(PROFILE, overrides).vlm
    adapter = write_random_adapter(vcfg, tmp_path / "run" / "adapter", seed=0, pixels=PIX)
    merged = merge_and_export("tiny", adapter, tmp_path / "merged", min_pixels=PIX, max_pixels=PIX,
                              cache_dir=vcfg.cache_dir, tiny_vision="random")
    # the adapter as one trained on a hub model shows it (any base name but the merged folder's)
    config = adapter / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()),
                                  "base_model_name_or_path": "Qwen/Qwen2.5-VL-7B-Instruct"}))
    pairs = make_pairs(tmp_path / "pairs", n=3, val_fraction=0.0)
    out = tmp_path / "described"
    code, _, err = run_cli(["describe", "--config", PROFILE, "--vlm", str(merged), "--adapter", str(adapter),
                            "--shards", str(pairs), "--out", str(out), *overrides])
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"--vlm {merged}" in last and f"--adapter {adapter}" in last and "export-vlm" in last, last
    assert not out.exists()

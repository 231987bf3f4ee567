"""`export-vlm` of a fine-tuning run's adapter under other pixel bounds or another base than the run recorded
(its config.yaml beside the adapter) is refused before the model loads, naming each key with both values and the
run's config: the export saved the processor with the export command's bounds (the default profile's 256x256 for a
model fine-tuned at 56x56), so the merged model, served elsewhere, resized images as the adapter never saw them;
a base of another name was merged with a warning only. The prompt, which the export does not save, may differ."""
from __future__ import annotations

import json

import pytest

from support.cli import run_cli
from support.vlm import write_random_adapter

PIX = 56 * 56


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.config import save_config

    root = tmp_path_factory.mktemp("export_trained")
    overrides = [f"vlm.cache_dir={root / 'cache'}", "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}",
                 f"vlm.max_pixels={PIX}", "vlm.model=tiny"]
    cfg = load_config("cpu-demo", overrides)
    run = root / "run"
    write_random_adapter(cfg.vlm, run / "adapter", seed=0, pixels=PIX)
    save_config(cfg, run / "config.yaml")
    return run, overrides


def _export(run, out, *overrides):
    return run_cli(["export-vlm", "--adapter", str(run / "adapter"), "--out", str(out), "--config", "cpu-demo",
                    *overrides])


@pytest.mark.parametrize("changed, key", [(["vlm.min_pixels=784"], "vlm.min_pixels"),
                                          (["vlm.max_pixels=12544"], "vlm.max_pixels"),
                                          (["vlm.model=Qwen/Qwen2.5-VL-3B-Instruct"], "vlm.model")])
def test_other_settings_than_the_run_s_are_refused_before_any_work(run_dir, tmp_path, changed, key):
    run, overrides = run_dir
    code, _, err = _export(run, tmp_path / "merged", *overrides, *changed)
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert key in last and str(run / "config.yaml") in last and "--config" in last, last
    assert not (tmp_path / "merged").exists()


def test_the_run_s_settings_export_with_its_pixel_bounds_and_the_prompt_may_differ(run_dir, tmp_path):
    run, overrides = run_dir
    code, _, err = _export(run, tmp_path / "merged", *overrides, "vlm.prompt=Describe the tissue.")
    assert code == 0, err[-2000:]
    saved = json.loads((tmp_path / "merged/processor_config.json").read_text())["image_processor"]["size"]
    assert saved == {"shortest_edge": PIX, "longest_edge": PIX}, saved  # (Qwen2.5-VL's names for the bounds)

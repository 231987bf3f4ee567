"""`describe` with a fine-tuned adapter used whatever prompt and pixel bounds it was given, without a word: a
model trained on 4 image tokens and one prompt was asked with 16 tokens and another prompt, and its text counted
as the adapter's. The fine-tuning run's config.yaml beside the adapter (or behind a merged export's
merged_from.json) now fixes them: other values are refused before the output folder is claimed, naming each key
with both values."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.config import save_config
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.vlm.trained_with import check_describe_settings, training_config_path

from support.vlm import DESCRIBE_PIXELS, describe_config, make_pairs, write_random_adapter

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A fine-tuning run folder as finetune-vlm leaves it: config.yaml beside adapter/."""
    tmp = tmp_path_factory.mktemp("trained-settings")
    make_pairs(tmp / "in", n=8, per_shard=4, val_fraction=0.25)
    run_dir = tmp / "runs" / "ft"
    run_dir.mkdir(parents=True)
    cfg = describe_config(tmp)
    write_random_adapter(cfg.vlm, run_dir / "adapter", 1, DESCRIBE_PIXELS)
    save_config(cfg, run_dir / "config.yaml")
    return tmp, run_dir


def test_other_prompt_and_pixels_are_refused_naming_each_key_and_no_output_is_claimed(run):
    from mmlnb_dist.recipes.vlm.describe import run_describe

    tmp, run_dir = run
    out = tmp / "mis"
    bad = describe_config(tmp, "vlm.min_pixels=12544", "vlm.max_pixels=12544", "vlm.prompt=Describe the image.")
    with pytest.raises(ConfigError) as err:
        run_describe(bad, "tiny", str(run_dir / "adapter"), tmp / "in", out, progress=False)
    message = str(err.value)
    for key, given, trained in (("min_pixels", 12544, DESCRIBE_PIXELS), ("max_pixels", 12544, DESCRIBE_PIXELS)):
        assert f"vlm.{key}: given {given}, trained with {trained}" in message, message
    assert "vlm.prompt: given 'Describe the image.'" in message and str(run_dir / "config.yaml") in message
    assert not out.exists()
    with pytest.raises(ConfigError, match=r"vlm.tiny_seed: given 1, trained with 0"):
        run_describe(describe_config(tmp, "vlm.tiny_seed=1"), "tiny", str(run_dir / "adapter"), tmp / "in", out,
                     progress=False)
    assert not out.exists()
    # The run's own settings describe as before.
    result = run_describe(describe_config(tmp), "tiny", str(run_dir / "adapter"), tmp / "in", out, progress=False)
    assert result["num_samples"] == 8


def test_a_merged_export_is_held_to_its_adapter_s_run_and_a_bare_adapter_to_nothing(run, tmp_path):
    tmp, run_dir = run
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "merged_from.json").write_text(json.dumps({"base": "tiny", "adapter": str(run_dir / "adapter")}))
    assert training_config_path(str(merged), None) == run_dir / "config.yaml"
    with pytest.raises(ConfigError, match=r"vlm.max_pixels: given 12544, trained with 3136") as err:
        check_describe_settings(describe_config(tmp, "vlm.max_pixels=12544").vlm, str(merged), None)
    assert "vlm.model" not in str(err.value)  # the export is its own model
    check_describe_settings(describe_config(tmp).vlm, str(merged), None)
    # An adapter without a run beside it (another tool's) has nothing to be held to.
    lone = write_random_adapter(describe_config(tmp).vlm, tmp_path / "lone", 2, DESCRIBE_PIXELS)
    check_describe_settings(describe_config(tmp, "vlm.max_pixels=12544").vlm, "tiny", str(lone))

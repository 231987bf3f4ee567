"""A search's trials run in folders of their own: `absolute_paths` hands them every local path absolute, the str
settings that may be local paths (`PathText`) included, and leaves hub model names as written."""
from __future__ import annotations

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import absolute_paths


def test_a_trial_gets_the_local_paths_of_text_settings_absolute_and_hub_names_as_written(tmp_path):
    """A search hands its trials, which run in folders of their own, absolute paths: `fusion.image_features` and
    `distributed.deepspeed_config` (str settings that may be local paths) stayed relative, so a trial looked for
    the features (or the DeepSpeed JSON) in its own folder. A hub model name that is no local path stays."""
    (tmp_path / "features").mkdir()
    (tmp_path / "ds.json").write_text("{}")
    cfg = load_config(None, ["fusion.image_features=features", "distributed.deepspeed_config=ds.json"])
    fixed = absolute_paths(cfg, tmp_path)
    assert fixed.fusion.image_features == str(tmp_path / "features")
    assert fixed.distributed.deepspeed_config == str(tmp_path / "ds.json")
    assert fixed.vlm.model == cfg.vlm.model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert cfg.fusion.image_features == "features"  # a copy: the caller's config is unchanged

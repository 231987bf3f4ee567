"""Two refusals of the root config that name what to give instead, found unguarded by a mutation audit of
`config/__init__.py` and `config/tune.py`: a folder given as `--config` (it used to fall through to "not found"
although it exists) and a `tune.recipe` written with an underscore for the pipeline's hyphen (`vlm_fusion`)."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config, resolve_profile


def test_a_folder_given_as_the_config_is_refused_naming_a_file_to_give(tmp_path):
    with pytest.raises(ConfigError, match=rf"config file {tmp_path} is a folder; give a YAML file \(e.g. "
                                          rf"{tmp_path / 'config.yaml'}\)"):
        resolve_profile(tmp_path)


def test_a_pipeline_named_with_an_underscore_gets_a_did_you_mean():
    with pytest.raises(ConfigError, match="tune.recipe: 'vlm_fusion' is no recipe of the table nor a pipeline; "
                                          "did you mean 'vlm-fusion'"):
        load_config(None, ["tune.recipe=vlm_fusion"])

"""A true/false where a number goes is refused, naming the key: pydantic's lax mode read `true` as 1, so
`train.epochs=true` trained one epoch, `train.lr=true` at a learning rate of 1.0 and `epochs: yes` in a YAML file
(YAML 1.1's boolean) the same, all without a word. Booleans stay booleans, numbers stay numbers, and an Optional
number is still unset by null."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


@pytest.mark.parametrize("override", ["train.epochs=true", "train.lr=true", "train.lr=false",
                                      "data.loader.image_size=yes", "run.seed=on"])
def test_a_boolean_for_a_number_is_refused_naming_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}: a number, not true/false \(got (True|False)\)"):
        load_config("cpu-demo", [override])


def test_a_boolean_for_a_number_in_a_yaml_file_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: yes\n")
    with pytest.raises(ConfigError, match=r"train\.epochs: a number, not true/false"):
        load_config(path)


def test_numbers_booleans_and_unset_optional_numbers_still_load():
    cfg = load_config("cpu-demo", ["train.epochs=3", "train.lr=0.5", "data.loader.augment=false",
                                   "run.seed=0", "data.loader.image_size=64"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.data.loader.augment, cfg.run.seed) == (3, 0.5, False, 0)
    assert isinstance(cfg.train.epochs, int) and not isinstance(cfg.train.epochs, bool)

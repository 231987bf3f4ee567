"""A value given to a section (`train=1` on the command line, `train: 5` in a file, an entry of the curriculum
phases given a number) was refused as "Input should be a valid dictionary or instance of TrainConfig": the name
of a class in the code, not of a setting. The refusal says the key is a section and how to set its keys."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config


@pytest.mark.parametrize("override, key", [
    ("train=1", "train"),
    ("train.lr_schedule=cosine", "train.lr_schedule"),
    ("fusion.curriculum.phases.0=5", "fusion.curriculum.phases.0"),
])
def test_a_value_for_a_section_is_refused_naming_it_a_section(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert f"{key}: a section: set its keys ({key}.KEY=VALUE), or give it a mapping" in message, message
    assert "Config" not in message.split("):", 1)[1], message


def test_a_value_for_a_section_in_a_file_is_named_the_same(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: 5\n")
    with pytest.raises(ConfigError, match=r"train: a section: set its keys .* \(got 5\)"):
        load_config(path)

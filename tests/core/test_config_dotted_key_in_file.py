"""A dotted key written in a YAML file (`train.lr: 0.1`, the command line's form) was refused as
"train.lr: unknown key; did you mean 'train.lr'?", a hint naming what was written. The refusal now says that a
file nests its keys."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config


@pytest.mark.parametrize("text, key", [
    ("train.lr: 0.1\n", "train.lr"),
    ("train:\n  lr_schedule.warmup_ratio: 0.1\n", "train.lr_schedule.warmup_ratio"),
])
def test_a_dotted_key_in_a_file_is_refused_saying_files_nest_keys(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{key}: unknown key: a YAML file nests its keys" in message, message
    assert "did you mean" not in message


def test_a_typo_in_a_file_still_gets_its_hint(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"train.lrr: unknown key; did you mean 'train.lr'\?"):
        load_config(path)

"""The "did you mean" of an unknown key written as litgpt / torchtune users write them.

A bare setting name (`lr=1e-3`, `epochs=3`, `lr: 0.1` at the top of a file) got no hint, or one recipe's key only
(`epochs=3`: "did you mean 'vlm.epochs'?", never `train.epochs`): it now lists every key of that name. A key in the
wrong case inside a known section (`train.LR=1`) was answered "did you mean 'train'?", a section, not a key."""
from __future__ import annotations

import re

import pytest

from mmlnb_dist.config import Config, ConfigError, load_config
from mmlnb_dist.core.config import known_keys


def _same_name(leaf):
    return [k for k in known_keys(Config) if k.endswith("." + leaf)]


@pytest.mark.parametrize("leaf", ["lr", "epochs"])
def test_a_bare_setting_name_is_answered_with_every_key_of_that_name(leaf):
    assert len(_same_name(leaf)) >= 2  # train's and the VLM's at least
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{leaf}=3"])
    hint = re.search(r"did you mean (.*)\?", str(err.value))
    assert hint is not None, str(err.value)
    assert set(re.findall(r"'([\w.]+)'", hint.group(1))) == set(_same_name(leaf)), str(err.value)


def test_a_bare_setting_name_at_the_top_of_a_file_is_answered_with_its_keys(tmp_path):
    path = tmp_path / "flat.yaml"
    path.write_text("lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"lr: unknown key; did you mean 'train\.lr'.*'vlm\.lr'"):
        load_config(path)


@pytest.mark.parametrize("override", ["train.LR=1", "Train.Epochs=2"])
def test_a_key_in_the_wrong_case_is_answered_with_the_key(override):
    key = override.split("=")[0].lower()
    with pytest.raises(ConfigError, match=rf"did you mean '{re.escape(key)}'\?"):
        load_config(None, [override])

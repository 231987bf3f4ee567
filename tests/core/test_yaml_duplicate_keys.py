"""A key written twice in a user's YAML file: PyYAML keeps the last and drops the first without a word, so a
config with two `train:` sections trained with half of what the user wrote. Every YAML file a user hands the tool
(config, search space, label merge) refuses it, naming the key and both lines."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import Config, ConfigError, load_config
from mmlnb_dist.core.files import load_yaml
from mmlnb_dist.data.multilabel import load_label_merge
from mmlnb_dist.data.shardset import ShardError
from mmlnb_dist.tuning.space import SpaceError, load_space

TWO_TRAIN_SECTIONS = """\
train:
  epochs: 7
  lr: 0.01
fusion:
  model:
    fixed_alpha: 0.5
train:
  global_batch_size: 4
"""


def test_a_config_with_a_section_written_twice_is_refused_naming_both_lines(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(TWO_TRAIN_SECTIONS)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "'train'" in text and "line 1" in text and "line 7" in text and str(path) in text


def test_a_nested_key_written_twice_is_refused(tmp_path):
    path = tmp_path / "nested.yaml"
    path.write_text("train:\n  epochs: 7\n  lr: 0.01\n  epochs: 9\n")
    with pytest.raises(ConfigError, match=r"'epochs'.*line 2.*line 4"):
        load_config(path)


def test_a_merge_key_override_is_not_a_duplicate(tmp_path):
    # `<<: *base` then an explicit key is how YAML users override a shared block: legitimate, kept.
    path = tmp_path / "anchors.yaml"
    path.write_text("x: &base {epochs: 3, lr: 0.5}\ntrain:\n  <<: *base\n  lr: 0.01\n")
    assert load_yaml(path) == {"x": {"epochs": 3, "lr": 0.5}, "train": {"epochs": 3, "lr": 0.01}}


def test_a_config_written_once_loads_as_before(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("train:\n  epochs: 7\n  lr: 0.01\n")
    cfg = load_config(path)
    assert (cfg.train.epochs, cfg.train.lr) == (7, 0.01) and cfg.data == Config().data


def test_a_search_space_with_a_parameter_written_twice_is_refused(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  train.lr: {loguniform: [1e-5, 1e-3]}\n  train.lr: {choice: [1e-4]}\n")
    with pytest.raises(SpaceError, match=r"'train\.lr'.*line 2.*line 3"):
        load_space(path)


def test_a_search_space_that_is_not_yaml_is_refused_with_its_name(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("params:\n  train.lr: {loguniform: [1e-5, 1e-3\n")
    with pytest.raises(SpaceError, match="broken.yaml"):
        load_space(path)


def test_a_label_merge_with_a_target_written_twice_is_refused(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("Immune: [Immunology]\nTumour: [Neoplasm]\nImmune: [Immunopathology]\n")
    with pytest.raises(ShardError, match=r"'Immune'.*line 1.*line 3"):
        load_label_merge(path)

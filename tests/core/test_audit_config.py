"""Mutation-audit gaps of core.config and core.sections: an override's value may hold `=`, YAML's null unsets only
an Optional text field, a config file must hold a mapping, every bad key is named before any work starts,
assignments are validated, and the bounds of the shared sections (keep_checkpoints, epochs, lr, warmup_ratio, an
empty sqlite path) refuse what would run wrongly; fingerprints leave the wait settings out."""
from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
import yaml
from pydantic import ValidationError

from mmlnb_dist.config import ConfigError, load_config
from mmlnb_dist.core.config import Section, absolute_paths
from mmlnb_dist.core.sections import DistributedConfig, TrainConfig


def test_an_override_value_may_hold_an_equals_sign():
    cfg = load_config(None, ["run.name=lr=3e-4", "tracking.uri=sqlite:///runs/x.db?mode=rwc"])
    assert cfg.run.name == "lr=3e-4" and cfg.tracking.uri == "sqlite:///runs/x.db?mode=rwc"


def test_null_is_a_name_where_the_field_cannot_be_unset():
    """`run.name=null` is a run named null (run.name is not Optional); `tracking.register_name=null` unsets."""
    cfg = load_config(None, ["run.name=null", "tracking.register_name=NULL"])
    assert cfg.run.name == "null" and cfg.tracking.register_name is None


def test_a_config_file_that_is_not_a_mapping_is_refused_saying_so(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump([{"train": {"epochs": 3}}]))
    with pytest.raises(ConfigError, match=f"config file {path} must hold a mapping at the top level"):
        load_config(path)


def test_every_bad_setting_is_named_in_one_refusal(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 0, "keep_checkpoints": 0}}))
    with pytest.raises(ConfigError) as err:
        load_config(path, ["train.lr=0"])
    message = str(err.value)
    assert message.startswith(f"invalid config ({path} + overrides train.lr=0):")
    for key in ("train.epochs", "train.keep_checkpoints", "train.lr"):
        assert f"\n  {key}: " in message


def test_an_assignment_is_validated_as_a_file_would_be():
    cfg = load_config(None)
    with pytest.raises(ValidationError):
        cfg.train.lr = 0.0
    with pytest.raises(ValidationError):
        cfg.train.epochs = "many"
    assert cfg.train.lr > 0 and cfg.train.epochs >= 1


@pytest.mark.parametrize("field, refused, accepted", [
    ("keep_checkpoints", 0, 1),  # 0 kept every checkpoint (tags[:-0] is empty): a full disk, not none kept
    ("epochs", 0, 1),
    ("lr", 0.0, 1e-9),
    ("checkpoint_every", 0, 1),
])
def test_train_bounds(field, refused, accepted):
    with pytest.raises(ValidationError):
        TrainConfig(**{field: refused})
    assert getattr(TrainConfig(**{field: accepted}), field) == accepted


def test_a_warmup_as_long_as_the_run_is_refused():
    """warmup_ratio=1 would warm up over every step and never reach the schedule it configures."""
    with pytest.raises(ConfigError, match=r"train\.lr_schedule\.warmup_ratio"):
        load_config(None, ["train.lr_schedule.warmup_ratio=1"])
    assert load_config(None, ["train.lr_schedule.warmup_ratio=0.99"]).train.lr_schedule.warmup_ratio == 0.99


@pytest.mark.parametrize("uri", ["sqlite:///", "sqlite:///?mode=ro", "sqlite://runs/x.db"])
def test_a_sqlite_uri_without_a_file_is_refused(uri):
    with pytest.raises(ConfigError, match="tracking.uri"):
        load_config(None, [f"tracking.uri={uri}"])


def test_fingerprints_leave_out_how_long_ranks_wait_but_not_what_they_compute():
    a = DistributedConfig(rank0_wait_s=60).results_dump()
    b = DistributedConfig(rank0_wait_s=3600).results_dump()
    assert a == b and "rank0_wait_s" not in a
    assert DistributedConfig(zero_stage=2).results_dump() != a


def test_glob_characters_are_refused_in_the_output_folder_too():
    with pytest.raises(ConfigError, match=r"run\.output_dir"):
        load_config(None, ["run.output_dir=runs/[a]"])



class _Inputs(Section):
    folders: List[Path] = []
    """Input folders."""


def test_absolute_paths_reaches_the_paths_inside_a_list(tmp_path):
    """A section holding a list of paths (as a recipe's may) hands a trial every entry absolute."""
    fixed = absolute_paths(_Inputs(folders=[Path("a"), tmp_path / "b"]), tmp_path)
    assert fixed.folders == [tmp_path / "a", tmp_path / "b"]

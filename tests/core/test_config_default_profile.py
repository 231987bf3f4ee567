"""`config show|validate|explain` without --config check the config `train` runs: the cpu-demo profile.

They read the bare built-in defaults (150 epochs, a 7B VLM) while train, tune, ablate, finetune-vlm and features
default to the cpu-demo profile: `config validate fusion.curriculum.phases.1.start_epoch=8` said "ok: defaults"
and `train` refused the same override. Their --help now names the default profile, as train's does."""
from __future__ import annotations

import re

import pytest
import yaml

from mmlnb_dist.cli import main
from mmlnb_dist.commands import DEFAULT_PROFILE
from mmlnb_dist.config import load_config

OVERRIDE = "fusion.curriculum.phases.1.start_epoch=8"  # after cpu-demo's next phase (epoch 6): refused


def test_validate_without_config_refuses_what_train_refuses(capsys):
    assert main(["config", "validate", OVERRIDE]) == 2
    assert "fusion.curriculum" in capsys.readouterr().err
    assert main(["train", OVERRIDE]) == 2
    assert "fusion.curriculum" in capsys.readouterr().err
    assert main(["config", "validate"]) == 0
    assert f"ok: {DEFAULT_PROFILE}" in capsys.readouterr().out


def test_show_and_explain_without_config_give_the_default_profiles_values(capsys):
    profile = load_config(DEFAULT_PROFILE)
    assert main(["config", "show"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["epochs"] == profile.train.epochs
    assert main(["config", "explain", "train.epochs"]) == 0
    assert f"train.epochs = {profile.train.epochs}  (default 150; from {DEFAULT_PROFILE})" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["show", "validate", "explain"])
def test_help_names_the_default_profile(action, capsys):
    with pytest.raises(SystemExit) as done:
        main(["config", action, "--help"])
    assert done.value.code == 0
    text = re.sub(r"-\s+", "-", " ".join(capsys.readouterr().out.split()))  # argparse may wrap after a hyphen
    assert re.search(rf"default:? {DEFAULT_PROFILE}\b", text), text

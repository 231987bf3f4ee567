"""Dotted overrides may come anywhere after the subcommand, before or after its options (as `key=value` in
torchtune's and litgpt's CLIs): `pipeline --config cpu-demo --from train train.epochs=2` keeps the override."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import parse_arguments


def test_overrides_after_options_are_kept_in_order():
    args = parse_arguments(["pipeline", "--config", "cpu-demo", "run.name=a", "--from", "train", "train.epochs=2",
                            "--until", "evaluate", "train.lr=0.01"])
    assert args.overrides == ["run.name=a", "train.epochs=2", "train.lr=0.01"]
    assert (args.first, args.last, args.config) == ("train", "evaluate", "cpu-demo")


def test_a_stray_argument_is_still_an_error_naming_it(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_arguments(["pipeline", "--config", "cpu-demo", "run.name=a", "--from", "train", "stray"])
    assert exc.value.code == 2
    assert "stray" in capsys.readouterr().err


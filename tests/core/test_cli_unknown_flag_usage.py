"""An unknown flag given to a subcommand is refused under that subcommand's usage (it printed the top-level
`usage: mmlnb-dist [-h] ...`, which lists no option of the command), naming the flag; a flag spelled like a dotted
override (`--train.epochs=3`) is answered with the override itself (`train.epochs=3`)."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import parse_arguments


@pytest.mark.parametrize("argv, usage, flag", [
    (["train", "--epochs", "3"], "usage: mmlnb-dist train ", "--epochs"),
    (["tune", "--foo"], "usage: mmlnb-dist tune ", "--foo"),
    (["config", "explain", "--bar"], "usage: mmlnb-dist config explain ", "--bar"),
    (["config", "show", "--bogus", "run.seed=1"], "usage: mmlnb-dist config show ", "--bogus"),
])
def test_an_unknown_flag_is_refused_under_the_subcommands_usage(argv, usage, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_arguments(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert f"{usage[len('usage: '):].strip()}: error: unrecognized arguments: " in err, err
    assert flag in err


@pytest.mark.parametrize("argv, override", [
    (["train", "--train.epochs=3"], "train.epochs=3"),
    (["tune", "--config", "cpu-demo", "--tune.num_samples", "4"], "tune.num_samples=4"),
])
def test_a_flag_spelled_as_a_dotted_override_names_the_override(argv, override, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_arguments(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: mmlnb-dist {argv[0]} " in err and f"`{override}`" in err, err


def test_a_plain_unknown_flag_gets_no_override_hint(capsys):
    with pytest.raises(SystemExit):
        parse_arguments(["train", "--epochs", "3"])
    assert "key=value" not in capsys.readouterr().err

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



@pytest.mark.parametrize("argv, option", [
    (["predict", "x.png", "--model", "m", "--out", "p.csv", "--batch-size", "0"], "--batch-size"),
    (["predict", "x.png", "--model", "m", "--out", "p.csv", "--chunk-size", "-2"], "--chunk-size"),
    (["predict", "x.png", "--model", "m", "--out", "p.csv", "--top-k", "0"], "--top-k"),
    (["features", "extract", "--shards", "s", "--encoder", "tiny", "--batch-size", "0"], "--batch-size"),
    (["features", "extract", "--shards", "s", "--encoder", "tiny", "--image-size", "0"], "--image-size"),
    (["train", "--print-deepspeed-config", "--world-size", "0"], "--world-size"),
    (["slides", "synth", "--out", "s", "--per-class", "0"], "--per-class"),
    (["mlflow-server", "--port", "0"], "--port"),
])
def test_a_count_that_is_not_positive_is_refused_naming_the_option(argv, option, capsys):
    """--batch-size 0 ended predict and features extract in a traceback (`range() arg 3 must not be zero`);
    --image-size 0 and --world-size 0 were taken as "not given"; --per-class 0 wrote an empty slide set."""
    with pytest.raises(SystemExit) as exc:
        parse_arguments(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and ("positive integer" in err or "port number" in err), err


@pytest.mark.parametrize("argv", [
    ["evaluate", "--export", "e", "--split", "tset"],
    ["predict", "x.png", "--model", "m", "--out", "p.csv", "--split", "validation"],
])
def test_a_split_that_no_shard_set_has_is_refused_with_the_three_names(argv, capsys):
    """`evaluate --split tset` said to "rebuild the shards with a 'tset' split"; a shard set has train, val, test."""
    with pytest.raises(SystemExit) as exc:
        parse_arguments(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid choice" in err and "'train', 'val', 'test'" in err, err

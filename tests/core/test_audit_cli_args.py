"""The command line's own parsing, found unguarded by a mutation audit of `cli.py`: an option-looking `--x=y` left
over is an unknown option (not a config override), a command is required, a user error exits 2, and under a
launcher the console keeps rank 0's lines only (the rank read from RANK, as `core.distributed` does)."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.cli import main, parse_arguments


def test_an_unknown_option_with_a_value_is_an_error_not_an_override(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_arguments(["pipeline", "--config", "cpu-demo", "--from", "train", "--epochs=2"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --epochs=2" in capsys.readouterr().err


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_arguments([])
    assert exc.value.code == 2 and "COMMAND" in capsys.readouterr().err


def test_a_config_error_exits_2_naming_the_command(capsys):
    assert main(["config", "explain", "train.lrr"]) == 2
    assert capsys.readouterr().err.startswith("mmlnb-dist config: error: ")


def test_under_a_launcher_only_rank_0_prints(package_logger, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")  # (a launcher sets all three; without it every rank took GPU 0)
    assert main(["config", "explain", "run.seed"]) == 0
    capsys.readouterr()
    logging.getLogger("mmlnb_dist.core.engine").info("a line every rank would print")
    logging.getLogger("mmlnb_dist.core.engine").info("this rank's own", extra={"all_ranks": True})
    err = capsys.readouterr().err
    assert "a line every rank would print" not in err and "[rank 1 engine] this rank's own" in err, err


def test_ctrl_c_ends_a_command_with_exit_code_130(monkeypatch, capsys):
    from mmlnb_dist.commands import config_cmd

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(config_cmd, "_explain", interrupted)
    assert main(["config", "explain", "run.seed"]) == 130
    assert "mmlnb-dist config: interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("code, ended", [(0, True), (2, False)])
def test_the_program_ends_its_process_groups_only_after_a_successful_command(monkeypatch, code, ended):
    """A failed command leaves them: destroying groups while other ranks are still inside a collective can hang."""
    import torch.distributed  # noqa: F401 - a command that used torch

    from mmlnb_dist import cli
    from mmlnb_dist.core import distributed

    calls = []
    monkeypatch.setattr(cli, "main", lambda: code)
    monkeypatch.setattr(distributed, "destroy_process_group", lambda: calls.append("destroyed"))
    with pytest.raises(SystemExit) as exc:
        cli.console()
    assert exc.value.code == code and calls == (["destroyed"] if ended else [])

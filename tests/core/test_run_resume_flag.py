"""`train --resume` (the flag other tools spell it with) is refused naming the override that resumes a run,
`run.resume=true`: it was "unrecognized arguments: --resume", with no word of how a run is continued."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import parse_arguments


@pytest.mark.parametrize("argv", [["train", "--resume"],
                                  ["train", "--config", "cpu-demo", "--resume", "train.epochs=3"]])
def test_train_resume_flag_names_the_override(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_arguments(argv)
    assert exc.value.code == 2
    assert "run.resume=true" in capsys.readouterr().err


def test_run_resume_true_still_parses():
    assert parse_arguments(["train", "run.resume=true"]).overrides == ["run.resume=true"]

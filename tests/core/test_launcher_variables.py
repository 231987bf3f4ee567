"""A launcher variable that is no rank (a hand-written job script's `RANK=$SLURM_PROCID` with SLURM_PROCID unset
gives "", a typo gives "one", a copied RANK beyond WORLD_SIZE) is named in one line, exit code 2: every command
read them before its error handling and ended in a ValueError traceback, or ran as a rank that cannot exist."""
from __future__ import annotations

import contextlib
import io

import pytest

from mmlnb_dist.cli import main


@pytest.mark.parametrize("env, says", [
    ({"RANK": "one"}, "RANK='one' is not a whole number"),
    ({"WORLD_SIZE": ""}, "WORLD_SIZE='' is not a whole number"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 is not below WORLD_SIZE=2"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 is not a positive number"),
    ({"LOCAL_RANK": "-1"}, "LOCAL_RANK=-1 is negative"),
])
def test_a_bad_launcher_variable_is_named(monkeypatch, env, says):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["config", "show", "--config", "cpu-demo"])
    assert code == 2, err.getvalue()
    assert says in err.getvalue() and "Traceback" not in err.getvalue(), err.getvalue()
    assert "set by the launcher" in err.getvalue(), err.getvalue()


def test_the_launcher_variables_of_a_real_rank_are_read():
    from mmlnb_dist.core.distributed import DistEnv

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RANK", "3"), mp.setenv("WORLD_SIZE", "4"), mp.setenv("LOCAL_RANK", "1")
        env = DistEnv.from_environment()
    assert (env.rank, env.world_size, env.local_rank) == (3, 4, 1)

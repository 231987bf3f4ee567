"""`ablate --rows "$ROWS"` with an empty variable (or `--rows ,`): the empty list read as "no --rows", so the
study trained every row of the recipe (hours) instead of refusing. An empty --rows is refused before anything
starts, as an empty --seeds is."""
from __future__ import annotations

import pytest

from support.cli import run_cli


@pytest.mark.parametrize("rows", ["", ",", " , "])
def test_an_empty_rows_list_is_refused_not_read_as_every_row(tmp_path, rows, monkeypatch):
    import mmlnb_dist.studies as studies

    started = []
    monkeypatch.setattr(studies, "run_study", lambda *a, **k: started.append(k) or pytest.fail("study started"))
    code, _, err = run_cli(["ablate", "--config", "clip-demo", "--rows", rows, f"run.output_dir={tmp_path}"])
    assert code == 2, err
    assert "--rows" in err and "no row" in err and "concat" in err, err  # names the rows there are
    assert not started and not any(tmp_path.iterdir())

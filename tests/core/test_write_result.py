"""`metrics.json` is what `tracking import` (and a pipeline) reads as "the run finished". The recipes' finish wrote
it with a plain `write_text`: a process killed half-way through the write left a torn file where a finished run's
result should be, or destroyed a resumed run's earlier one. Both recipes now write it through
`core.recipe.write_result` (a temporary file and a rename): a kill leaves no result or the old one, never half."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.core.recipe import write_result
from support.result_write import Killed, is_result, kill_result_writes

RESULT = {"val/accuracy": 0.75, "per_class": [0.5, 1.0], "epochs_trained": 2}


def test_the_result_is_written_as_strict_json(tmp_path):
    path = write_result(tmp_path, {**RESULT, "nan": float("nan")})
    assert path == tmp_path / "metrics.json"
    assert json.loads(path.read_text()) == {**RESULT, "nan": None}


def test_a_kill_during_the_write_leaves_no_torn_result(tmp_path, monkeypatch):
    kill_result_writes(monkeypatch)
    with pytest.raises(Killed):
        write_result(tmp_path, RESULT)
    assert not [p.name for p in tmp_path.iterdir() if is_result(p)]  # nor a temporary file left behind


def test_a_kill_during_the_rewrite_keeps_the_earlier_result_whole(tmp_path, monkeypatch):
    (tmp_path / "metrics.json").write_text('{"val/accuracy": 0.5}')  # a resumed run's earlier result
    kill_result_writes(monkeypatch)
    with pytest.raises(Killed):
        write_result(tmp_path, RESULT)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"val/accuracy": 0.5}

"""`register --name` with '?' is refused naming the flag before the run is looked up: MLflow registers such a name,
but reads `models:/nb?v2@champion` as the model `nb` with a query string, so `predict` could never load it (a
'model not found' naming another model, after the version had been registered and the alias moved)."""
from __future__ import annotations

from support.cli import run_cli


def test_a_name_with_a_question_mark_is_refused_first(tmp_path):
    code, _, err = run_cli(["register", "--run", str(tmp_path / "no-run"), "--name", "nb?v2"])
    assert code == 2 and "Traceback" not in err, err
    assert "--name 'nb?v2'" in err and "'?'" in err, err
    assert "neither a run folder" not in err  # (refused before the run is looked up)

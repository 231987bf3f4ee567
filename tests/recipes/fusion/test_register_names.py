"""`register --name/--alias` that MLflow's registry cannot take is refused naming the flag before the run is looked
up or anything is registered: a name with '/' or ':' (or blank), or an alias MLflow refuses (`best model`, `v2`,
`latest`), was an `MlflowException` traceback once the run had been found and checked."""
from __future__ import annotations

import pytest

from support.cli import run_cli


@pytest.mark.parametrize("flag, value, why", [("--name", "nb/fusion", "'/'"), ("--name", "models:nb", "':'"),
                                              ("--name", " ", "empty"), ("--alias", "best model", "alphanumerics"),
                                              ("--alias", "v2", "reserved"), ("--alias", "Latest", "reserved")])
def test_a_name_or_alias_the_registry_refuses_is_named_first(tmp_path, flag, value, why):
    code, _, err = run_cli(["register", "--run", str(tmp_path / "no-run"), flag, value])
    assert code == 2 and "Traceback" not in err, err
    assert f"{flag} {value!r}" in err and why in err, err
    assert "neither a run folder" not in err  # (refused before the run is looked up)


def test_a_folder_inside_the_run_is_answered_with_the_run_folder(tmp_path):
    run = tmp_path / "runs" / "r1"
    (run / "export").mkdir(parents=True)
    (run / "tracking").mkdir()
    (run / "tracking" / "train.json").write_text('{"run_id": "abc"}')
    code, _, err = run_cli(["register", "--run", str(run / "export"), "--name", "nb"])
    assert code == 2 and f"give the run folder: --run {run}" in err, err

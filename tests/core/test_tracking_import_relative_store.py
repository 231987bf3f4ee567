"""`tracking import` of a run folder whose saved `tracking.uri` is a relative `sqlite:///PATH`: training read PATH
from the folder it ran in, the import read it from the folder the import runs in, so an import from anywhere else
made a new, empty store there and the run never reached the store its other runs are in. The import now finds the
folder training ran in from where the run folder is and the saved `run.output_dir`, and says which folder it used
when that cannot be known."""
from __future__ import annotations

import logging

import pytest

from support.fake_mlflow import install

from mmlnb_dist.core.tracking.folder_import import import_run_folder


@pytest.fixture
def stores(monkeypatch):
    return install(monkeypatch)


def _untracked(run_dir, output_dir):
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"run: {{name: t, output_dir: {output_dir}}}\n"
                                         f"tracking: {{uri: 'sqlite:///stores/team.db', backends: [stdout]}}\n")
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "a": 0.5}\n')
    return run_dir


@pytest.mark.parametrize("output_dir", ["runs", "./work/runs"])
def test_a_relative_store_is_read_from_the_folder_training_ran_in(tmp_path, stores, monkeypatch, output_dir):
    trained_in = tmp_path / "project"
    run_dir = _untracked(trained_in / output_dir / "t", output_dir)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = import_run_folder(run_dir)
    assert result["uri"] == f"sqlite:///{trained_in.resolve() / 'stores' / 'team.db'}"
    assert list(stores) == [result["uri"]]


def test_a_store_whose_training_folder_is_unknown_names_the_folder_it_is_read_from(tmp_path, stores, monkeypatch,
                                                                                   caplog):
    run_dir = _untracked(tmp_path / "copied" / "t", "/cluster/scratch/runs")  # moved since: where it ran is lost
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        result = import_run_folder(run_dir)
    assert result["uri"] == f"sqlite:///{tmp_path.resolve() / 'stores' / 'team.db'}"
    assert "sqlite:///stores/team.db" in caplog.text and str(tmp_path.resolve()) in caplog.text, caplog.text
    assert "--uri" in caplog.text, caplog.text

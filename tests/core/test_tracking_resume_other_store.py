"""A resume whose `tracking.uri` (or default store) is not the one its MLflow run was logged to: the run is then in
two stores, the first one's copy left as it was (a killed process's run stays RUNNING there), and nothing said so
beyond the config change listed among others. Now a warning names both stores, the run left at the first, and
what the second gets (with a journal, what it lacks of the run; without one, only this process's part)."""
from __future__ import annotations

import logging

import pytest

from support.fake_mlflow import OTHER, URI, install, train_logger


@pytest.fixture
def stores(monkeypatch):
    return install(monkeypatch)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("spool", [True, False])
def test_a_resume_at_another_store_warns_naming_both(tmp_path, stores, caplog, spool):
    run_dir = tmp_path / "run"
    first = train_logger(run_dir, spool=spool)
    first.log_metrics({"a": 1.0}, 1)
    if first.spool is not None:
        first.spool.unlock()  # killed: no close
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = train_logger(run_dir, uri=OTHER, resume=True, spool=spool)
    said = [w for w in _warnings(caplog) if URI in w and OTHER in w]
    assert said and first.run_id in said[0], _warnings(caplog)
    assert ("replayed from the journal" in said[0]) == spool, said[0]
    again.close()


@pytest.mark.parametrize("spool", [True, False])
def test_a_resume_at_the_same_store_says_nothing_of_stores(tmp_path, stores, caplog, spool):
    run_dir = tmp_path / "run"
    first = train_logger(run_dir, spool=spool)
    first.close()
    with caplog.at_level(logging.INFO):
        again = train_logger(run_dir, resume=True, spool=spool)
    assert again.run_id == first.run_id
    assert not [w for w in _warnings(caplog) if "store" in w], _warnings(caplog)

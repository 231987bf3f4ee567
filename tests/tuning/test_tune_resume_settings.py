"""A resume keeps the searcher and sample count the search was started with (Ray restores its searcher): a changed
`tune.num_samples` or `tune.searcher` was ignored without a word. The driver records both in search.json and a
resume that asks for others warns, naming the stored and the asked values."""
from __future__ import annotations

import json
import logging

import pytest

from support.tune_search import run_until_ray, search_config, tune_saved_its_state


def _run(tmp_path, monkeypatch, *extra):
    return run_until_ray(tmp_path, monkeypatch, "optimisation", *extra)


def test_a_resume_with_another_sample_count_or_searcher_warns_naming_both(tmp_path, monkeypatch, caplog):
    first = _run(tmp_path, monkeypatch, "tune.num_samples=4", "tune.searcher=random")
    assert (first["num_samples"], first["searcher"]) == (4, "random")
    tune_saved_its_state(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist"):
        again = _run(tmp_path, monkeypatch, "tune.num_samples=8", "tune.searcher=optuna", "tune.resume=true")
    assert "tune.num_samples=8 is ignored: search 'search' was started with tune.num_samples=4" in caplog.text
    assert "tune.searcher=optuna is ignored: search 'search' was started with tune.searcher=random" in caplog.text
    assert (again["num_samples"], again["searcher"]) == (4, "random")  # the record keeps what the search runs


def test_a_resume_with_the_same_settings_says_nothing(tmp_path, monkeypatch, caplog):
    _run(tmp_path, monkeypatch, "tune.num_samples=4")
    tune_saved_its_state(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist"):
        _run(tmp_path, monkeypatch, "tune.num_samples=4", "tune.resume=true")
    assert "is ignored" not in caplog.text


def test_a_resume_before_tune_saved_anything_runs_the_asked_settings(tmp_path, monkeypatch, caplog):
    """Stopped before Tune wrote its state: the resume starts Tune afresh, with the config's settings."""
    _run(tmp_path, monkeypatch, "tune.num_samples=4")
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist"):
        again = _run(tmp_path, monkeypatch, "tune.num_samples=8", "tune.resume=true")
    assert "is ignored" not in caplog.text and again["num_samples"] == 8


def test_a_resume_of_a_search_recorded_before_these_settings_records_no_start_value(tmp_path, monkeypatch,
                                                                                    caplog):
    """A search.json written before num_samples/searcher were recorded: a resume recorded its own command's values
    as what the search "was started with", so a later resume's warning named a start value that never ran."""
    first = _run(tmp_path, monkeypatch, "tune.num_samples=4")
    path = tmp_path / "runs" / "tune" / "search" / "search.json"
    path.write_text(json.dumps({k: v for k, v in first.items() if k not in ("num_samples", "searcher")}))
    tune_saved_its_state(tmp_path)
    again = _run(tmp_path, monkeypatch, "tune.num_samples=8", "tune.resume=true")
    assert "num_samples" not in again and "searcher" not in again
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist"):
        _run(tmp_path, monkeypatch, "tune.num_samples=16", "tune.resume=true")
    assert "was started with tune.num_samples=8" not in caplog.text


class _FitStarts(Exception):
    pass


def _tuner_calls(tmp_path, monkeypatch, *extra):
    """Run the driver up to `tuner.fit()` (no Ray started) and return how it made its Tuner: `("new", kwargs)` or
    `("restore", path, kwargs)`."""
    from ray import tune

    from mmlnb_dist.tuning import driver

    calls = []

    class Recorded(tune.Tuner):  # Tune's own can_restore decides whether there is a search to restore
        def __init__(self, trainable, **kwargs):
            calls.append(("new", kwargs))

        @classmethod
        def restore(cls, path, trainable, **kwargs):
            calls.append(("restore", path, kwargs))
            return cls.__new__(cls)

        def fit(self):
            raise _FitStarts

    monkeypatch.setattr(driver, "_init_ray", lambda cfg: False)
    monkeypatch.setattr(tune, "Tuner", Recorded)
    cfg = search_config(tmp_path, *extra)
    with pytest.raises(_FitStarts):
        driver.run_search(cfg, "optimisation")
    import ray

    assert not ray.is_initialized()
    return calls


def test_a_resume_of_a_stored_search_restores_it_with_its_errored_trials(tmp_path, monkeypatch):
    """`tune.resume=true` on a search Tune saved goes through `Tuner.restore(<search folder>, resume_errored=True)`
    (docs/tune.md: finished trials are kept, interrupted and errored ones run again). Without it a resume would start
    a new experiment in the folder: every finished trial run again, the stored searcher's history lost."""
    _run(tmp_path, monkeypatch, "tune.num_samples=4")
    tune_saved_its_state(tmp_path)
    calls = _tuner_calls(tmp_path, monkeypatch, "tune.num_samples=4", "tune.resume=true")
    assert len(calls) == 1 and calls[0][0] == "restore", calls
    _, path, kwargs = calls[0]
    assert path == str(tmp_path / "runs" / "tune" / "search") and kwargs.get("resume_errored") is True, calls


def test_a_new_search_builds_a_new_tuner(tmp_path, monkeypatch):
    """`tune.resume=false` on a fresh folder starts a new experiment, with the config's sample count; nothing is
    restored."""
    calls = _tuner_calls(tmp_path, monkeypatch, "tune.num_samples=4")
    assert [c[0] for c in calls] == ["new"], calls
    assert calls[0][1]["tune_config"].num_samples == 4 and calls[0][1]["run_config"].name == "search"

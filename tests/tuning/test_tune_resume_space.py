"""A resume keeps the search space the search was started with: Ray restores its stored param space, so a resume
given another `--space` ran the old space's trials while the driver read the new one's keys: the best trial's
values were looked up under keys it never had, and best.yaml was the base config with none of them (summary.json
`best_params: {}`), without a word. A resume with another space is now refused before Ray starts, naming the
space the search was started with."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.config import load_config


class _RayStarts(Exception):
    pass


def _tune_saved_its_state(tmp_path):
    """What a started search leaves for `Tuner.restore`: Tune's tuner.pkl in the search folder."""
    from ray import tune

    tune.Tuner(lambda config: None, param_space={"train.lr": tune.uniform(1e-4, 1e-3)},
               tune_config=tune.TuneConfig(metric="val/balanced_accuracy", mode="max", num_samples=4),
               run_config=tune.RunConfig(name="search", storage_path=str(tmp_path / "runs" / "tune"), verbose=0))


def _run(tmp_path, monkeypatch, space, *extra):
    from mmlnb_dist.tuning import driver

    def stop(cfg):
        raise _RayStarts

    monkeypatch.setattr(driver, "_init_ray", stop)
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[stdout]",
                                   "tune.recipe=mmlnb_dist.tuning.smoke:run", "tune.num_cpus=2", *extra])
    with pytest.raises(_RayStarts):
        driver.run_search(cfg, space)
    return json.loads((tmp_path / "runs" / "tune" / "search" / "search.json").read_text())


def _space(tmp_path, name, params):
    path = tmp_path / name
    path.write_text("params:\n" + "".join(f"  {key}: {spec}\n" for key, spec in params.items()))
    return path


def test_a_resume_with_another_space_is_refused_before_ray_starts(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import driver
    from mmlnb_dist.tuning.checks import SearchError

    first = _space(tmp_path, "lr.yaml", {"train.lr": "{loguniform: [1.0e-4, 3.0e-3]}"})
    started = _run(tmp_path, monkeypatch, first)
    _tune_saved_its_state(tmp_path)
    other = _space(tmp_path, "wd.yaml", {"train.weight_decay": "{loguniform: [1.0e-6, 1.0e-2]}"})
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[stdout]",
                                   "tune.recipe=mmlnb_dist.tuning.smoke:run", "tune.num_cpus=2", "tune.resume=true"])
    with pytest.raises(SearchError, match=rf"search 'search' at .* was started with the space {first} "
                                          rf"\(train\.lr\), not {other} \(train\.weight_decay\).*--space {first}"):
        driver.run_search(cfg, other)
    kept = json.loads((tmp_path / "runs" / "tune" / "search" / "search.json").read_text())
    assert kept == started  # refused before the record was rewritten


def test_a_resume_with_the_same_space_goes_on_wherever_its_file_is(tmp_path, monkeypatch):
    params = {"train.lr": "{loguniform: [1.0e-4, 3.0e-3]}"}
    _run(tmp_path, monkeypatch, _space(tmp_path, "lr.yaml", params))
    _tune_saved_its_state(tmp_path)
    (tmp_path / "moved").mkdir()
    _run(tmp_path, monkeypatch, _space(tmp_path / "moved", "lr.yaml", params), "tune.resume=true")


def test_a_search_recorded_before_its_spaces_content_is_compared_to_the_file_it_names(tmp_path, monkeypatch):
    from mmlnb_dist.tuning.checks import SearchError

    first = _space(tmp_path, "lr.yaml", {"train.lr": "{loguniform: [1.0e-4, 3.0e-3]}"})
    _run(tmp_path, monkeypatch, first)
    record = tmp_path / "runs" / "tune" / "search" / "search.json"
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "space_params"}))
    _tune_saved_its_state(tmp_path)
    other = _space(tmp_path, "wd.yaml", {"train.weight_decay": "{loguniform: [1.0e-6, 1.0e-2]}"})
    with pytest.raises(SearchError, match=rf"was started with the space {first} \(train\.lr\)"):
        _run(tmp_path, monkeypatch, other, "tune.resume=true")
    first.unlink()  # nothing left to compare with: the resume goes on
    _run(tmp_path, monkeypatch, other, "tune.resume=true")

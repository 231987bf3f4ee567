"""A resume keeps the search space the search was started with: Ray restores its stored param space, so a resume
given another `--space` ran the old space's trials while the driver read the new one's keys: the best trial's
values were looked up under keys it never had, and best.yaml was the base config with none of them (summary.json
`best_params: {}`), without a word. A resume with another space is now refused before Ray starts, naming the
space the search was started with."""
from __future__ import annotations

import json

import pytest

from support.tune_search import run_until_ray, search_config, tune_saved_its_state


def _space(tmp_path, name, params):
    path = tmp_path / name
    path.write_text("params:\n" + "".join(f"  {key}: {spec}\n" for key, spec in params.items()))
    return path


def test_a_resume_with_another_space_is_refused_before_ray_starts(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import driver
    from mmlnb_dist.tuning.checks import SearchError

    first = _space(tmp_path, "lr.yaml", {"train.lr": "{loguniform: [1.0e-4, 3.0e-3]}"})
    started = run_until_ray(tmp_path, monkeypatch, first)
    tune_saved_its_state(tmp_path)
    other = _space(tmp_path, "wd.yaml", {"train.weight_decay": "{loguniform: [1.0e-6, 1.0e-2]}"})
    cfg = search_config(tmp_path, "tune.resume=true")
    with pytest.raises(SearchError, match=rf"search 'search' at .* was started with the space {first} "
                                          rf"\(train\.lr\), not {other} \(train\.weight_decay\).*--space {first}"):
        driver.run_search(cfg, other)
    kept = json.loads((tmp_path / "runs" / "tune" / "search" / "search.json").read_text())
    assert kept == started  # refused before the record was rewritten


def test_a_resume_with_the_same_space_goes_on_wherever_its_file_is(tmp_path, monkeypatch):
    params = {"train.lr": "{loguniform: [1.0e-4, 3.0e-3]}"}
    run_until_ray(tmp_path, monkeypatch, _space(tmp_path, "lr.yaml", params))
    tune_saved_its_state(tmp_path)
    (tmp_path / "moved").mkdir()
    run_until_ray(tmp_path, monkeypatch, _space(tmp_path / "moved", "lr.yaml", params), "tune.resume=true")


def test_a_search_recorded_before_its_spaces_content_is_compared_to_the_file_it_names(tmp_path, monkeypatch):
    from mmlnb_dist.tuning.checks import SearchError

    first = _space(tmp_path, "lr.yaml", {"train.lr": "{loguniform: [1.0e-4, 3.0e-3]}"})
    run_until_ray(tmp_path, monkeypatch, first)
    record = tmp_path / "runs" / "tune" / "search" / "search.json"
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "space_params"}))
    tune_saved_its_state(tmp_path)
    other = _space(tmp_path, "wd.yaml", {"train.weight_decay": "{loguniform: [1.0e-6, 1.0e-2]}"})
    with pytest.raises(SearchError, match=rf"was started with the space {first} \(train\.lr\)"):
        run_until_ray(tmp_path, monkeypatch, other, "tune.resume=true")
    first.unlink()  # nothing left to compare with: the resume goes on
    run_until_ray(tmp_path, monkeypatch, other, "tune.resume=true")

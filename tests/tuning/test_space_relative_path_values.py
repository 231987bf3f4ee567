"""A space's choice or grid of paths (`data.shards: {grid: [shards/a, shards/b]}`) is made absolute against the
folder `tune` runs from, as the base config's paths are: a trial runs in a folder of its own, where the relative
values named nothing, so every trial failed ("shard folder not found: shards/a") after Ray, the search folder and
the MLflow parent run had started. Values of other fields, and names that are no path there, stay as written."""
from __future__ import annotations

from support.tune_search import run_until_ray


def test_relative_path_values_reach_the_trials_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / "shards" / name).mkdir(parents=True)
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  data.shards: {grid: [shards/a, " + str(tmp_path / "shards" / "b") + "]}\n"
                     "  fusion.curriculum.schedule: {choice: [step, linear]}\n")
    recorded = run_until_ray(tmp_path, monkeypatch, space)["space_params"]
    assert recorded["data.shards"] == {"grid": [str(tmp_path / "shards" / "a"), str(tmp_path / "shards" / "b")]}
    assert recorded["fusion.curriculum.schedule"] == {"choice": ["step", "linear"]}


def test_a_model_name_that_is_no_path_here_stays(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.tuning.driver import absolute_values

    base = load_config("cpu-demo").model_dump(mode="json")
    params = {"vlm.model": {"choice": ["tiny", "Qwen/Qwen2.5-VL-3B-Instruct"]}}
    assert absolute_values(params, base, tmp_path) == params
    (tmp_path / "tiny").mkdir()  # a folder of that name where tune runs: the local model, as in the base config
    assert absolute_values(params, base, tmp_path)["vlm.model"]["choice"][0] == str(tmp_path / "tiny")

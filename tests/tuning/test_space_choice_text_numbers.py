"""A choice (or grid) of a number field written as YAML reads text: `train.lr: {choice: [1e-4, 1e-3]}` is two
strings (YAML 1.1 reads 1e-4 as text; a range was already refused with that hint). The config turned each into a
float in the trial, so it trained, but Ray's trial table, `trials.csv`, `summary.json`'s `best_params`, the parent
run's `best.*` tags and search.png (text sorted as categories) all held the strings, and Optuna searched them as
labels. Refused before Ray starts, naming the key and the values, with the YAML hint."""
from __future__ import annotations

import pytest

from mmlnb_dist.tuning.checks import check_choice_values
from mmlnb_dist.tuning.space import SpaceError


@pytest.mark.parametrize("key, spec, named", [
    ("train.lr", {"choice": ["1e-4", 1.0e-3]}, "'1e-4'"),
    ("train.global_batch_size", {"grid": [16, "32"]}, "'32'"),
    ("distributed.micro_batch_per_gpu", {"choice": [None, "4"]}, "'4'"),
])
def test_text_in_a_choice_of_a_number_field_is_refused(key, spec, named):
    with pytest.raises(SpaceError, match=rf"space\.yaml: '{key}' takes numbers, but its \w+ holds text {named}: "
                                         r"write numbers \(YAML reads 1e-4 as text: write 1\.0e-4\)"):
        check_choice_values({key: spec}, "space.yaml")


def test_numbers_and_text_fields_are_left_alone():
    check_choice_values({"train.lr": {"choice": [1.0e-4, 1.0e-3]}, "fusion.curriculum.schedule":
                         {"choice": ["step", "linear"]}, "train.global_batch_size": {"quniform": [16, 64, 16]}},
                        "space.yaml")


def test_the_search_refuses_it_before_ray_starts(tmp_path, monkeypatch):
    from support.tune_search import search_config, stop_where_ray_starts

    from mmlnb_dist.tuning import driver

    stop_where_ray_starts(monkeypatch)
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  train.lr: {choice: [1e-4, 1e-3]}\n")
    with pytest.raises(SpaceError, match="'train.lr' takes numbers, but its choice holds text '1e-4', '1e-3'"):
        driver.run_search(search_config(tmp_path), space)
    assert not (tmp_path / "runs").exists()  # nothing written

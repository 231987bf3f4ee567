"""A resume after the space file was edited in place (the usual way a user changes a space) was refused with advice
it could not follow: "was started with the space lr.yaml (train.lr), not lr.yaml (train.lr) ... resume it with
--space lr.yaml", the very file that now holds other ranges. The refusal now says the file changed since the search
started, names each key whose distribution changed (then and now), and says how to go on."""
from __future__ import annotations

import pytest

from support.tune_search import run_until_ray, search_config, tune_saved_its_state


def test_a_resume_after_the_space_file_was_edited_names_the_change(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import driver
    from mmlnb_dist.tuning.checks import SearchError

    space = tmp_path / "lr.yaml"
    space.write_text("params:\n  train.lr: {loguniform: [1.0e-4, 3.0e-3]}\n  train.weight_decay: {choice: [0.0]}\n")
    run_until_ray(tmp_path, monkeypatch, space)
    tune_saved_its_state(tmp_path)
    space.write_text("params:\n  train.lr: {loguniform: [1.0e-5, 3.0e-3]}\n  train.weight_decay: {choice: [0.0]}\n")
    with pytest.raises(SearchError) as err:
        driver.run_search(search_config(tmp_path, "tune.resume=true"), space)
    message = str(err.value)
    assert f"{space} changed since search 'search' started" in message, message
    assert "train.lr: {'loguniform': [0.0001, 0.003]} then, {'loguniform': [1e-05, 0.003]} now" in message, message
    assert "weight_decay" not in message and f"--space {space}" not in message, message
    assert "search.json" in message and "another tune.name" in message, message

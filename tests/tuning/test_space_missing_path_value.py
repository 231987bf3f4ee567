"""A space's choice or grid of shard sets with one that does not exist (`data.shards: {grid: [shards/a,
shards/missing]}`) is refused before Ray starts, naming the key, the value and the recipe's own reason: the recipe's
checks ran on the base config only, so its trials failed one by one ("shard folder not found") after the search
folder and its MLflow parent run were made."""
from __future__ import annotations

import pytest

from support.shards import make_shard_set
from support.tune_search import search_config, stop_where_ray_starts


def test_a_missing_shard_set_in_a_grid_is_refused_before_the_search_starts(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import driver
    from mmlnb_dist.tuning.checks import SearchError

    stop_where_ray_starts(monkeypatch)
    shards = make_shard_set(tmp_path)
    missing = tmp_path / "missing"
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  data.shards: {{grid: [{shards}, {missing}]}}\n")
    cfg = search_config(tmp_path, "tune.recipe=fusion", f"data.shards={shards}")
    with pytest.raises(SearchError, match=rf"space\.yaml: 'data\.shards' grid value {missing}: data\.shards: shard "
                                          rf"folder not found"):
        driver.run_search(cfg, space)
    assert not (tmp_path / "runs" / "tune").exists()  # nothing written

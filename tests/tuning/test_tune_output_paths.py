"""Where a search writes besides its folder: `tune.best_config` (written once the search has ended) and
`tune.shared_cache_dir`. A folder given as tune.best_config, or a file where its folder goes, ran every trial and
then ended in a traceback (IsADirectoryError / FileExistsError) with no summary.json; a file given as
tune.shared_cache_dir ended in a FileExistsError traceback. All are refused before anything runs or is written."""
from __future__ import annotations

import pytest

from support.tune_search import RayStarts, search_config, stop_where_ray_starts


def _search(tmp_path, monkeypatch, *extra):
    from mmlnb_dist.tuning import driver

    stop_where_ray_starts(monkeypatch)
    driver.run_search(search_config(tmp_path, *extra), "optimisation")


def test_a_folder_given_as_the_best_config_is_refused_before_anything_runs(tmp_path, monkeypatch):
    from mmlnb_dist.core.errors import UserError

    (tmp_path / "best").mkdir()
    with pytest.raises(UserError, match=rf"tune\.best_config: {tmp_path}/best is a folder: give the file the best "
                                        rf"trial's config is written to \(e\.g\. {tmp_path}/best/best\.yaml\)"):
        _search(tmp_path, monkeypatch, f"tune.best_config={tmp_path}/best")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("setting, value", [("tune.best_config", "{f}/best.yaml"), ("tune.shared_cache_dir", "{f}"),
                                            ("tune.shared_cache_dir", "{f}/cache")])
def test_a_file_where_a_search_output_folder_goes_is_refused_before_anything_runs(tmp_path, monkeypatch, setting,
                                                                                   value):
    from mmlnb_dist.core.errors import UserError

    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("a file")
    with pytest.raises(UserError, match=rf"{setting}: {in_the_way} is a file, not a folder"):
        _search(tmp_path, monkeypatch, f"{setting}={value.format(f=in_the_way)}")
    assert not (tmp_path / "runs").exists()


def test_the_default_outputs_still_start_the_search(tmp_path, monkeypatch):
    with pytest.raises(RayStarts):
        _search(tmp_path, monkeypatch)

"""`tune.storage_path` (or `run.output_dir`, whose `tune/` folder is the default storage) naming a file was refused
as "tune.shared_cache_dir: ... is a file", a setting the user never gave (the default cache lies in the search
folder). The refusal names the storage settings now, before anything is written."""
from __future__ import annotations

import pytest

from support.tune_search import search_config, stop_where_ray_starts


@pytest.mark.parametrize("setting", ["tune.storage_path", "run.output_dir"])
def test_a_storage_folder_that_is_a_file_is_named_as_the_storage(tmp_path, monkeypatch, setting):
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.tuning import driver

    stop_where_ray_starts(monkeypatch)
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    cfg = search_config(tmp_path, f"{setting}={afile}")
    with pytest.raises(UserError) as err:
        driver.run_search(cfg, "optimisation")
    message = str(err.value)
    assert message.startswith("the search's storage folder (tune.storage_path, else <run.output_dir>/tune): "
                              f"{afile} is a file"), message
    assert "shared_cache_dir" not in message, message

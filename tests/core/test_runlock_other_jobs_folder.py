"""`train run.name=<x>-study` trained a run into the folder of `ablate`'s study of that config (its config.yaml,
checkpoints and metrics among the study's row runs and table, and the study refused afterwards), and
`train run.name=tune` trained one into the default storage of `tune`'s searches (<run.output_dir>/tune). The
folder lock every job takes now refuses a folder that holds another kind of job, naming the folder, whose it is
and what to do, before the recipe's checks."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.recipe import run
from mmlnb_dist.core.runlock import FolderLock

from support.fusion import CPU_DEMO


class _Recipe:
    """A recipe whose check must not be reached."""

    name = "train"

    @staticmethod
    def check(cfg, env):
        raise AssertionError("the recipe's checks ran in another job's folder")


def _cfg(tmp_path, name):
    from mmlnb_dist.config import load_config

    return load_config(CPU_DEMO, [f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}",
                                  "tracking.backends=[stdout]"])


@pytest.mark.parametrize("marker", ["study.log", "table.json", "study.json"])
def test_a_run_in_a_studys_folder_is_refused(tmp_path, marker):
    study = tmp_path / "runs" / "r1-study"
    study.mkdir(parents=True)
    (study / marker).write_text("{}")
    with pytest.raises(UserError, match=rf"train: {study} holds an ablate study .*{marker}.*another run.name"):
        run(_Recipe, _cfg(tmp_path, "r1-study"))
    assert sorted(p.name for p in study.iterdir()) == [marker]  # nothing written there


def test_a_run_in_the_searches_storage_is_refused(tmp_path):
    storage = tmp_path / "runs" / "tune"
    (storage / "search1").mkdir(parents=True)
    (storage / "search1" / "search.json").write_text("{}")
    with pytest.raises(UserError, match=rf"train: {storage} holds tune searches .*search1.*another run.name"):
        run(_Recipe, _cfg(tmp_path, "tune"))
    with pytest.raises(UserError, match="holds tune searches"):
        FolderLock(storage, "finetune-vlm").acquire()
    assert not (storage / ".lock").exists()


def test_a_runs_own_folder_and_a_searchs_own_folder_are_taken(tmp_path):
    own = tmp_path / "run"
    own.mkdir()
    (own / "config.yaml").write_text("run: {}\n")
    (own / "table.json").write_text("{}")  # a study of the run's config, from when studies went in its folder
    FolderLock(own, "train").acquire().release()
    search = tmp_path / "tune" / "search1"
    search.mkdir(parents=True)
    (search / "search.json").write_text("{}")  # a search resumed takes its own folder
    FolderLock(search, "tune").acquire().release()

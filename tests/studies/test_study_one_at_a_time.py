"""One study per folder: a second `ablate` of the same config (the same `<run.output_dir>/<run.name>-study`) started
while the first runs trained the rows the first had not reached yet, failed on the one it held, opened the same
MLflow parent run and wrote its own table over the first one's. Now it is refused before it trains or writes
anything, naming the study that holds the folder; the folder is free again once that study ends."""
from __future__ import annotations

import pytest

from support.clip import clip_config

from mmlnb_dist.core.runlock import FolderInUseError, FolderLock


@pytest.fixture(autouse=True)
def no_process_group(monkeypatch):
    import mmlnb_dist.studies as studies

    monkeypatch.setattr(studies, "init_engine_process_group", lambda env, cfg: None)
    monkeypatch.setattr(studies, "require_shards", lambda path: None)  # the stand-ins open no shard set


def _trained(cfg, jobs):
    return {name: {"metrics": {"test/micro_f1": 0.5}, "skipped": False} for name in jobs}


def test_a_second_study_of_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    from mmlnb_dist.studies import run_study, study_folder

    cfg = clip_config(tmp_path / "no-shards", tmp_path / "runs", "tracking.backends=[stdout]", name="s")
    folder = study_folder(cfg)
    first = FolderLock(folder, "mmlnb-dist ablate", study=True).acquire()  # the study that runs
    try:
        with pytest.raises(FolderInUseError, match=r"runs/s-study is in use by `mmlnb-dist ablate`"):
            run_study(cfg, rows=["concat"], seeds=[0],
                      train_jobs=lambda c, jobs: pytest.fail("trained rows of a study another job runs"))
        assert not (folder / "table.md").exists()
    finally:
        first.release()
    study = run_study(cfg, rows=["concat"], seeds=[0], train_jobs=_trained)  # free once it ended
    assert study.table["concat"]["micro_f1"] == [0.5]
    run_study(cfg, rows=["concat"], seeds=[0], train_jobs=_trained)  # and its own rerun takes it again

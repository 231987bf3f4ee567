"""A second `ablate` in the same study folder with other rows or seeds (`--rows full,concat`, then `--rows sum`)
rewrote table.md / table.json / table.png with the new rows alone: the first table's numbers were gone from the
folder without a word (its runs stayed, but no table named them). Other rows or seeds are another study (its own MLflow
parent run, tests/studies/test_ablate.py): the earlier table now stays beside the new one, as
table-<rows>-seeds-<seeds>.md / json / png; a rerun, or one adding rows or seeds, writes the
table over the one it holds."""
from __future__ import annotations

import pytest

from support.clip import clip_config

from mmlnb_dist.recipes.clip.variants import METRICS


@pytest.fixture(autouse=True)
def no_process_group(monkeypatch):
    import mmlnb_dist.studies as studies

    monkeypatch.setattr(studies, "init_engine_process_group", lambda env, cfg: None)
    monkeypatch.setattr(studies, "require_shards", lambda path: None)  # the stand-in opens no shard set


def _train_jobs(cfg, jobs):  # a stand-in for training: each run reports numbers at once
    infos = {}
    for name, job in jobs.items():
        job.cfg.run.dir.mkdir(parents=True, exist_ok=True)
        infos[name] = {"metrics": {f"test/{m}": 0.5 for m in METRICS}, "trained": None, "skipped": False,
                       "feature_cache": {"hits": 0, "misses": 0}}
    return infos


def test_a_study_with_other_rows_or_seeds_keeps_the_earlier_table_beside_its_own(tmp_path):
    import json

    from mmlnb_dist.studies import run_study

    cfg = clip_config(tmp_path / "no-shards", tmp_path / "runs", name="t")
    first = run_study(cfg, rows=["concat", "sum"], seeds=[0], train_jobs=_train_jobs)
    before = (first.study_dir / "table.json").read_text()
    second = run_study(cfg, rows=["sum"], seeds=[1], train_jobs=_train_jobs)
    kept = first.study_dir / "table-concat+sum-seeds-0.json"
    assert kept.read_text() == before and (first.study_dir / "table-concat+sum-seeds-0.md").is_file()
    assert set(json.loads((second.study_dir / "table.json").read_text())["rows"]) == {"sum"}
    assert (second.study_dir / "table.md").read_text() == second.markdown


def test_a_rerun_or_a_larger_study_writes_its_table_over_the_earlier_one_it_holds(tmp_path):
    from mmlnb_dist.studies import run_study

    cfg = clip_config(tmp_path / "no-shards", tmp_path / "runs", name="t")
    run_study(cfg, rows=["concat", "sum"], seeds=[0], train_jobs=_train_jobs)
    again = run_study(cfg, rows=["sum", "concat"], seeds=[0], train_jobs=_train_jobs)
    larger = run_study(cfg, rows=["concat", "sum"], seeds=[0, 1], train_jobs=_train_jobs)
    assert set(larger.table) == {"concat", "sum"}
    assert sorted(p.name for p in again.study_dir.glob("table*")) == ["table.json", "table.md", "table.png"]

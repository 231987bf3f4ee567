"""`ablate` under a launcher runs `run_study` on every rank (the rows train on all of them): every rank opened the
study's MLflow parent run (one parent per rank, each with its own study.json write), wrote table.md / table.json /
table.png and printed the table, so a 4-GPU study had 4 parent runs and its table 4 times in the console. Rank 0
alone does it now. Ranks are faked (RANK / WORLD_SIZE), the runs are stand-ins for `core.recipe.run`; no
launcher, no process group."""
from __future__ import annotations

import pytest

from support.cli import run_cli
from support.clip import CLIP_PROFILE, clip_config

from mmlnb_dist.recipes.clip.variants import METRICS


@pytest.fixture()
def rank_one(monkeypatch):
    import mmlnb_dist.core.recipe as core_recipe
    import mmlnb_dist.core.tracking.runs as runs
    import mmlnb_dist.studies as studies

    monkeypatch.setattr(studies, "init_engine_process_group", lambda env, cfg: None)
    monkeypatch.setattr(studies, "require_shards", lambda path: None)  # the stand-ins open no shard set
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)

    def fake_run(klass, cfg, *args, **kwargs):
        cfg.run.dir.mkdir(parents=True, exist_ok=True)
        return {f"test/{m}": 0.5 for m in METRICS}

    opened = []

    def fake_open(cls, *args, **kwargs):
        opened.append(args)
        raise AssertionError("a parent run opened on rank 1")

    monkeypatch.setattr(core_recipe, "run", fake_run)
    monkeypatch.setattr(runs.ParentRun, "open", classmethod(fake_open))
    return opened


def test_only_rank_0_opens_the_parent_run_and_writes_the_table(tmp_path, rank_one):
    from mmlnb_dist.studies import run_study

    cfg = clip_config(tmp_path / "no-shards", tmp_path / "runs", name="r")
    cfg.tracking.backends = ["mlflow"]
    study = run_study(cfg, rows=["concat"], seeds=[0])
    assert rank_one == [] and study.parent_run_id is None
    assert study.table["concat"][METRICS[0]] == [pytest.approx(0.5)]  # every rank still knows the numbers
    assert not any((study.study_dir / name).exists() for name in ("table.md", "table.json", "table.png",
                                                                   "study.json"))


def test_only_rank_0_prints_the_table(tmp_path, rank_one):
    code, out, err = run_cli(["ablate", "--config", str(CLIP_PROFILE), "--rows", "concat",
                              f"data.shards={tmp_path / 'no-shards'}", f"run.output_dir={tmp_path}", "run.name=c",
                              "data.loader.num_workers=0", "tracking.backends=[stdout]"])
    assert code == 0, (out, err)
    assert "| concat |" not in out and "table:" not in out, out

"""A study leaves out the rows its config cannot train, before the first row trains: on clip-demo's encoder
branches (EfficientNet-Lite0, 1280 wide; MiniLM, 384) `sum` cannot add the two embeddings and `zero_shot` has no
CLIP towers to compare. The default study trained `concat` for minutes and then failed on `sum`; now the two rows
are left out and said so, and naming one in --rows is refused before any row trains."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.clip.variants import METRICS

from support.clip import ROOT


@pytest.fixture(autouse=True)
def no_process_group(monkeypatch):
    import mmlnb_dist.studies as studies

    monkeypatch.setattr(studies, "init_engine_process_group", lambda env, cfg: None)
    monkeypatch.setattr(studies, "require_shards", lambda path: None)  # the stand-ins open no shard set


def _clip_demo(tmp_path):
    return load_config(ROOT / "mmlnb_dist" / "profiles" / "clip-demo.yaml",
                       [f"data.shards={tmp_path / 'no-shards'}", f"run.output_dir={tmp_path / 'runs'}",
                        "run.name=study", "tracking.backends=[stdout]"])


def _trains(got):
    def train_jobs(cfg, jobs):
        got.extend(jobs)
        for job in jobs.values():
            job.cfg.run.dir.mkdir(parents=True)
        return {name: {"metrics": {f"val/{m}": 0.5 for m in METRICS}, "trained": None, "skipped": False}
                for name in jobs}

    return train_jobs


def test_rows_the_config_cannot_train_are_left_out_and_said_so(tmp_path, caplog):
    from mmlnb_dist.studies import run_study

    got = []
    with caplog.at_level(logging.INFO, logger="mmlnb_dist"):
        study = run_study(_clip_demo(tmp_path), train_jobs=_trains(got))
    assert "sum-seed0" not in got and "zero_shot-seed0" not in got
    assert got[:3] == ["concat-seed0", "prmf-seed0", "image_only-seed0"] and len(got) == 6
    assert list(study.table) == [name.rsplit("-seed", 1)[0] for name in got]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "row(s) sum, zero_shot left out" in said and "1280" in said and "384" in said


def test_a_row_named_in_rows_that_the_config_cannot_train_is_refused_before_any_row(tmp_path):
    from mmlnb_dist.studies import run_study

    got = []
    with pytest.raises(ConfigError, match=r"--rows: this config cannot train row sum: .*efficientnet_lite0 gives 1280"):
        run_study(_clip_demo(tmp_path), rows=["concat", "sum"], train_jobs=_trains(got))
    assert got == []

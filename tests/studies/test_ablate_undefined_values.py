"""The ablation table when a number is undefined: a run that diverged (no metrics: NaN) or a metric that is NaN on
the test split (macro AUROC where no label has both positives and negatives). table.json must stay strict JSON
(null, as metrics.json and evaluation.json write it: jq and JavaScript refuse a bare NaN), and table.md must say
"n/a" rather than print "nan ± nan"."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from support.clip import clip_config

from mmlnb_dist.recipes.clip.variants import METRICS


def _refuse_constant(name):
    raise ValueError(f"not strict JSON: {name}")


@pytest.fixture(autouse=True)
def no_process_group(monkeypatch):
    """The stand-in builds no engine and opens no shard set."""
    import mmlnb_dist.studies as studies

    monkeypatch.setattr(studies, "init_engine_process_group", lambda env, cfg: None)
    monkeypatch.setattr(studies, "require_shards", lambda path: None)


def fake_train_jobs(diverge=(), undefined=()):
    """Runs whose metrics are 0.5 + seed/100 + row code; `diverge`: no metrics; `undefined`: macro_auroc NaN."""
    codes = {"concat": 0.1, "sum": 0.2}

    def train_jobs(cfg, jobs):
        infos = {}
        for name, job in jobs.items():
            Path(job.cfg.run.dir).mkdir(parents=True)
            if name in diverge:
                infos[name] = {"metrics": {}, "diverged": "training diverged at step 3", "trained": None}
                continue
            metrics = {f"{split}/{m}": 0.5 + job.seed / 100 + codes[job.row] for split in ("val", "test")
                       for m in METRICS}
            if name in undefined:
                metrics["test/macro_auroc"] = float("nan")
            infos[name] = {"metrics": metrics, "trained": {"seed": job.seed}, "skipped": False}
        return infos

    return train_jobs


def test_table_json_is_strict_json_when_a_run_diverged(tmp_path):
    from mmlnb_dist.studies import run_study

    cfg = clip_config(tmp_path / "no-shards", tmp_path / "runs", name="d")
    study = run_study(cfg, rows=["concat", "sum"], seeds=[0, 1], train_jobs=fake_train_jobs(diverge={"sum-seed1"}))
    stored = json.loads((study.study_dir / "table.json").read_text(), parse_constant=_refuse_constant)
    assert stored["rows"]["sum"]["micro_f1_mean"] is None and stored["rows"]["sum"]["micro_f1"][1] is None
    assert stored["rows"]["sum"]["micro_f1"][0] == pytest.approx(0.7)
    assert stored["rows"]["concat"]["micro_f1_std"] == pytest.approx(statistics.stdev([0.6, 0.61]))


def test_an_undefined_metric_reads_n_a_in_the_table_not_nan(tmp_path):
    from mmlnb_dist.studies import run_study

    cfg = clip_config(tmp_path / "no-shards", tmp_path / "runs", name="u")
    study = run_study(cfg, rows=["concat", "sum"], seeds=[0, 1],
                      train_jobs=fake_train_jobs(undefined={"sum-seed0", "sum-seed1", "concat-seed1"}))
    assert math.isnan(study.table["sum"]["macro_auroc_mean"])
    assert "nan" not in study.markdown.lower(), study.markdown
    head = [c.strip() for c in next(x for x in study.markdown.splitlines() if x.startswith("| row |")).split("|")]
    for row in ("concat", "sum"):
        cells = [c.strip() for c in next(x for x in study.markdown.splitlines()
                                         if x.startswith(f"| {row} |")).split("|")]
        assert cells[head.index("macro_auroc")].startswith("n/a"), cells
        mean = statistics.fmean([0.5 + s / 100 + {"concat": 0.1, "sum": 0.2}[row] for s in (0, 1)])
        assert cells[head.index("micro_f1")].startswith(f"{mean:.4f} ± ")
    json.loads((study.study_dir / "table.json").read_text(), parse_constant=_refuse_constant)

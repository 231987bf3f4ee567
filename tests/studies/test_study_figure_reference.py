"""The study figure draws the reference row (the recipe's full model) in its own colour with a dashed line at its
mean, against which the other rows read. A study without that row (`--rows sum,prmf`) drew its first row so, as if
`sum` were the model the others are compared with; now no row is drawn as the reference then."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.clip import clip_config

from mmlnb_dist.recipes.clip.variants import METRICS
from mmlnb_dist.studies import summarise
from mmlnb_dist.studies.figure import study_figure


def _reference_lines(fig):
    return sorted({line.get_gid() for ax in fig.axes for line in ax.lines if (line.get_gid() or "").startswith(
        "reference:")})


def _table(rows):
    available = {row: (row, []) for row in rows}
    results = {(row, s): {"run_dir": f"runs/{row}-seed{s}", **{f"test/{m}": 0.5 + i / 10 + s / 100 for m in METRICS}}
               for i, row in enumerate(rows) for s in (0, 1)}
    return summarise(results, available, rows, [0, 1], METRICS, "test")


def test_the_reference_row_has_its_dashed_line():
    assert _reference_lines(study_figure(_table(["concat", "sum"]), METRICS, "test", "s")) == ["reference:concat"]


def test_a_study_without_the_reference_row_draws_none():
    fig = study_figure(_table(["sum", "prmf"]), METRICS, "test", "s", reference=None)
    assert _reference_lines(fig) == []


def test_run_study_names_the_reference_only_when_it_trained_it(tmp_path, monkeypatch):
    import mmlnb_dist.studies as studies

    monkeypatch.setattr(studies, "init_engine_process_group", lambda env, cfg: None)
    monkeypatch.setattr(studies, "require_shards", lambda path: None)
    drawn = {}

    def save(table, metrics, split, name, path, reference=None):
        drawn[name] = reference
        return path

    monkeypatch.setattr(studies, "save_study_figure", save)

    def train_jobs(cfg, jobs):
        for job in jobs.values():
            Path(job.cfg.run.dir).mkdir(parents=True)
        return {name: {"metrics": {f"test/{m}": 0.5 for m in METRICS}} for name in jobs}

    for name, rows in (("with", ["sum", "concat"]), ("without", ["sum", "prmf"])):
        cfg = clip_config(tmp_path / "no-shards", tmp_path / "runs", name=name)
        studies.run_study(cfg, rows=rows, seeds=[0], train_jobs=train_jobs)
    assert drawn == {"with-study": "concat", "without-study": None}


@pytest.mark.parametrize("rows", [["concat"], ["sum"]])
def test_one_row_draws(rows):
    study_figure(_table(rows), METRICS, "test", "s", reference=rows[0])

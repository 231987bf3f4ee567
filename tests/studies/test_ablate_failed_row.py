"""A study row whose run raises (an override that makes its training fail) used to end `ablate` with a traceback
and no table, after the rows before it had trained. Now the other rows keep their numbers, the table is written
with the failed row marked failed (its error's first line), a rerun retries only the failed run, and the command
exits non-zero after printing the table. The runs are stand-ins for `core.recipe.run`."""
from __future__ import annotations

import json

import pytest

from support.cli import run_cli
from support.clip import CLIP_PROFILE, clip_config

from mmlnb_dist.recipes.clip.variants import METRICS


@pytest.fixture()
def fake_runs(monkeypatch):
    """`core.recipe.run` replaced: the `sum` row raises a two-line error, the others give their seed's numbers."""
    import mmlnb_dist.core.recipe as core_recipe
    import mmlnb_dist.studies as studies

    monkeypatch.setattr(studies, "init_engine_process_group", lambda env, cfg: None)
    monkeypatch.setattr(studies, "require_shards", lambda path: None)  # the stand-ins open no shard set
    calls = []

    def fake_run(klass, cfg, *args, **kwargs):
        calls.append(cfg.run.name)
        cfg.run.dir.mkdir(parents=True, exist_ok=True)
        if cfg.clip.model.fusion == "sum":
            raise RuntimeError("boom in the sum head\nsecond line of the error")
        return {f"test/{m}": 0.5 + cfg.run.seed / 10 for m in METRICS}

    monkeypatch.setattr(core_recipe, "run", fake_run)
    return calls


def test_a_failed_row_leaves_the_table_of_the_others_and_is_retried_on_rerun(tmp_path, fake_runs):
    from mmlnb_dist.studies import run_study

    cfg = clip_config(tmp_path / "no-shards", tmp_path / "runs", name="f")
    study = run_study(cfg, rows=["concat", "sum", "prmf"], seeds=[0, 1])
    assert sorted(fake_runs) == sorted(f"{r}-seed{s}" for r in ("concat", "sum", "prmf") for s in (0, 1))
    assert study.failed == {f"sum-seed{s}": "RuntimeError: boom in the sum head" for s in (0, 1)}
    for row in ("concat", "prmf"):
        assert study.table[row][METRICS[0]] == [pytest.approx(0.5), pytest.approx(0.6)]
        assert study.table[row]["failed"] == [None, None]
    assert study.table["sum"]["failed"] == ["RuntimeError: boom in the sum head"] * 2
    markdown = (study.study_dir / "table.md").read_text()
    sum_line = next(line for line in markdown.splitlines() if line.startswith("| sum |"))
    assert "failed (seed 0, 1)" in sum_line and "nan" not in sum_line, sum_line
    assert "sum-seed1 failed: RuntimeError: boom in the sum head" in markdown
    assert "second line" not in markdown
    assert "| concat | 0.5500 ± 0.0707 |" in markdown
    stored = json.loads((study.study_dir / "table.json").read_text())
    assert stored["rows"]["sum"]["failed"] == ["RuntimeError: boom in the sum head"] * 2
    assert stored["rows"]["prmf"][f"{METRICS[0]}_mean"] == pytest.approx(0.55)

    fake_runs.clear()
    again = run_study(cfg, rows=["concat", "sum", "prmf"], seeds=[0, 1])
    assert sorted(fake_runs) == ["sum-seed0", "sum-seed1"]  # the finished runs are skipped, the failed retried
    assert sorted(again.skipped) == ["concat-seed0", "concat-seed1", "prmf-seed0", "prmf-seed1"]


def test_the_ablate_command_prints_the_table_and_exits_non_zero(tmp_path, fake_runs):
    code, out, err = run_cli(["ablate", "--config", str(CLIP_PROFILE), "--rows", "concat,sum",
                              f"data.shards={tmp_path / 'no-shards'}", f"run.output_dir={tmp_path}", "run.name=c",
                              "data.loader.num_workers=0", "tracking.backends=[stdout]"])
    assert code == 1, (out, err)
    assert "| concat | 0.5000 |" in out and "failed (seed 0)" in out, out
    assert "1 run(s) failed: sum-seed0: RuntimeError: boom in the sum head" in err and "Traceback" not in err, err
    assert (tmp_path / "c-study" / "table.md").is_file()

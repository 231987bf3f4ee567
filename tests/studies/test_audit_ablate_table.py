"""The ablation table from `run_study`, with the training replaced by a stand-in (`train_jobs`) whose metrics say
which variant and seed produced them: every requested row is present, the reference (full model) first, each row's
values come from its own variant's runs in seed order, and mean and sample standard deviation over three seeds are
checked with `statistics` (two seeds would hide a median for a mean). A run that diverged leaves the table on the
test split. Also `choose_rows` alone: the reference first whatever order `--rows` gives."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from support.clip import clip_config

from mmlnb_dist.recipes.clip.variants import METRICS

FUSION_CODE = {"concat": 1, "sum": 2, "prmf": 3, "image_only": 4, "text_only": 5, "zero_shot": 6}
SEEDS = [0, 1, 5]


def value(fusion: str, seed: int, split: str) -> float:
    """The stand-in's metric: unique per variant, seed and split, and not linear in the seed."""
    return FUSION_CODE[fusion] / 10 + seed ** 2 / 1000 + (0.0 if split == "test" else 0.05)


def fake_train_jobs(diverge=()):
    seen = {}

    def train_jobs(cfg, jobs):
        infos = {}
        for name, job in jobs.items():
            fusion, seed = job.cfg.clip.model.fusion, job.cfg.run.seed
            seen[name] = (job.row, fusion, seed, job.cfg.clip.model.image_encoder)
            Path(job.cfg.run.dir).mkdir(parents=True)  # a run's folder, under the study's
            if name in diverge:
                infos[name] = {"metrics": {}, "diverged": "training diverged at step 3", "trained": None}
                continue
            metrics = {f"{split}/{m}": value(fusion, seed, split) for split in ("val", "test") for m in METRICS}
            infos[name] = {"metrics": metrics, "trained": {"fusion": fusion, "seed": seed}, "skipped": False}
        return infos

    return train_jobs, seen


@pytest.fixture(autouse=True)
def no_process_group(monkeypatch):
    """The stand-in builds no engine: skip the study's DeepSpeed process group (slow to set up on CPU)."""
    import mmlnb_dist.studies as studies

    monkeypatch.setattr(studies, "init_engine_process_group", lambda env, cfg: None)
    monkeypatch.setattr(studies, "require_shards", lambda path: None)  # the stand-ins open no shard set


def _config(tmp_path, name):
    # the shards are never opened: the stand-in trains nothing
    return clip_config(tmp_path / "no-shards", tmp_path / "runs", name=name)


def test_every_row_present_reference_first_each_with_its_own_variants_seed_values(tmp_path):
    """Guards summarise/run_study: row order, the variant behind each row, values in seed order, mean and
    sample std over seeds, and what table.json and table.md hold."""
    from mmlnb_dist.studies import run_study

    train_jobs, seen = fake_train_jobs()
    rows = ["text_only", "resnet50_mlp", "concat", "sum"]
    study = run_study(_config(tmp_path, "t"), rows=rows, seeds=SEEDS, train_jobs=train_jobs)
    assert list(study.table) == ["concat", "text_only", "resnet50_mlp", "sum"]  # the reference first
    assert study.split == "test"
    # the right variant behind each row (resnet50_mlp: image only on a ResNet-50)
    assert seen["resnet50_mlp-seed5"][1:] == ("image_only", 5, "resnet50")
    assert {name: s[1] for name, s in seen.items() if s[2] == 0} == {
        "concat-seed0": "concat", "text_only-seed0": "text_only", "resnet50_mlp-seed0": "image_only",
        "sum-seed0": "sum"}
    stored = json.loads((study.study_dir / "table.json").read_text())
    assert list(stored["rows"]) == list(study.table) and stored["split"] == "test" and stored["seeds"] == SEEDS
    for row, entry in study.table.items():
        fusion = "image_only" if row == "resnet50_mlp" else row
        want = [value(fusion, s, "test") for s in SEEDS]
        assert entry["seeds"] == SEEDS
        for metric in METRICS:
            assert entry[metric] == pytest.approx(want)
            assert entry[f"{metric}_mean"] == pytest.approx(statistics.fmean(want))
            assert entry[f"{metric}_std"] == pytest.approx(statistics.stdev(want))
            assert stored["rows"][row][f"{metric}_mean"] == pytest.approx(statistics.fmean(want))
        assert entry["trained"] == [{"fusion": fusion, "seed": s} for s in SEEDS]
        assert [r.rsplit("/", 1)[-1] for r in entry["runs"]] == [f"{row}-seed{s}" for s in SEEDS]
    lines = [line for line in study.markdown.splitlines() if line.startswith("| ") and "---" not in line]
    assert [line.split("|")[1].strip() for line in lines[1:]] == list(study.table)
    concat = [value("concat", s, "test") for s in SEEDS]
    assert (f"| concat | {statistics.fmean(concat):.4f} ± {statistics.stdev(concat):.4f} |") in study.markdown


def test_a_diverged_run_leaves_the_table_on_the_test_split(tmp_path):
    """Guards the split choice: one run with no metrics (it diverged) must not move the other rows to val."""
    from mmlnb_dist.studies import run_study

    train_jobs, _ = fake_train_jobs(diverge={"sum-seed0"})
    study = run_study(_config(tmp_path, "d"), rows=["concat", "sum"], seeds=[0], train_jobs=train_jobs)
    assert study.split == "test"
    assert study.table["concat"]["micro_f1"] == [pytest.approx(value("concat", 0, "test"))]
    assert study.table["sum"]["diverged"] == ["training diverged at step 3"]
    sum_line = next(line for line in study.markdown.splitlines() if line.startswith("| sum |"))
    assert "diverged (seed 0)" in sum_line


def test_choose_rows_puts_the_reference_first_and_keeps_the_order_given():
    """Guards `choose_rows`: --rows in any order gives the reference first, then the order asked for; no --rows
    gives every row of the recipe."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.studies import choose_rows, study_rows

    from support.clip import CLIP_PROFILE

    cfg = load_config(CLIP_PROFILE, [])
    available, metrics = study_rows(cfg)
    assert choose_rows(cfg, available, ["sum", "prmf", "concat"], None) == ["concat", "sum", "prmf"]
    assert choose_rows(cfg, available, ["prmf", "sum"], None) == ["prmf", "sum"]  # no reference asked for
    assert choose_rows(cfg, available, None, None) == list(available)
    assert metrics[0] == "micro_f1"


def test_a_seed_that_diverged_among_several_still_gives_the_table(tmp_path):
    """With `--seeds 0,1` and one seed of a row diverged, the table's standard deviation of that row met a NaN
    and `statistics.stdev` raised AttributeError (Python 3.11): the study ended with no table after training every
    run. The row now says it diverged, its spread is NaN (not a number), and the other rows keep theirs."""
    import math

    from mmlnb_dist.studies import run_study

    train_jobs, _ = fake_train_jobs(diverge={"sum-seed1"})
    study = run_study(_config(tmp_path, "d2"), rows=["concat", "sum"], seeds=[0, 1], train_jobs=train_jobs)
    assert study.split == "test"
    assert math.isnan(study.table["sum"]["micro_f1_std"]) and math.isnan(study.table["sum"]["micro_f1_mean"])
    concat = [value("concat", s, "test") for s in (0, 1)]
    assert study.table["concat"]["micro_f1_std"] == pytest.approx(statistics.stdev(concat))
    assert study.table["sum"]["diverged"] == [None, "training diverged at step 3"]
    sum_line = next(line for line in study.markdown.splitlines() if line.startswith("| sum |"))
    assert "diverged (seed 1)" in sum_line
    assert (study.study_dir / "table.json").is_file() and (study.study_dir / "table.png").is_file()


@pytest.mark.parametrize("top_k, dropped", [(1, ["at_least_2_of_top_k"]), (2, []), (3, [])])
def test_the_clip_table_has_no_j_of_k_column_that_top_k_leaves_empty(top_k, dropped):
    """A run reports `at_least_{j}_of_top_k` for j <= clip.top_k only: with top_k=1 the j=2 column read n/a in
    every row of the table."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.studies import study_rows

    from support.clip import CLIP_PROFILE

    _, metrics = study_rows(load_config(CLIP_PROFILE, [f"clip.top_k={top_k}"]))
    assert metrics == [m for m in METRICS if m not in dropped]

"""`mmlnb-dist ablate` / studies.run_study: each row x seed is a real run of the recipe, the table's numbers are
those runs' own metrics (mean and sample standard deviation checked with `statistics`), a rerun trains nothing, the
rows are child runs of one MLflow parent, and a bad row or seed list is refused before any run starts."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from mmlnb_dist.core.errors import ConfigError

from support.clip import caption_shards, clip_config


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return caption_shards(tmp_path_factory.mktemp("study"), n=64, size=32, test_fraction=0.25)


def test_study_table_holds_each_runs_own_metrics_and_a_rerun_trains_nothing(shards, tmp_path):
    import mlflow

    from mmlnb_dist.studies import run_study

    # a profile that registers its training runs: the study's ablated rows must not become versions of that model
    cfg = clip_config(shards, tmp_path / "runs", "train.epochs=2", "tracking.backends=[stdout,mlflow]",
                      "tracking.register_name=prod-model", name="baselines")
    study = run_study(cfg, rows=["text_only", "concat"], seeds=[0, 1])
    assert study.split == "test" and list(study.table) == ["concat", "text_only"]  # the reference row first
    for row, entry in study.table.items():
        values = []
        for seed, run_dir in zip([0, 1], entry["runs"]):
            assert Path(run_dir) == tmp_path / "runs" / "baselines-study" / f"{row}-seed{seed}"
            stored = json.loads((Path(run_dir) / "metrics.json").read_text())
            values.append(stored["test/micro_f1"])
        assert entry["micro_f1"] == pytest.approx(values)
        assert entry["micro_f1_mean"] == pytest.approx(statistics.fmean(values))
        assert entry["micro_f1_std"] == pytest.approx(statistics.stdev(values))
    # the two seeds are really different runs (different seeds, different weights)
    assert len(set(study.table["concat"]["micro_auroc"])) == 2
    table = (tmp_path / "runs" / "baselines-study" / "table.md").read_text()
    assert table.index("| concat |") < table.index("| text_only |") and "± " in table

    client = mlflow.MlflowClient(json.loads((tmp_path / "runs" / "baselines-study" / "study.json").read_text())
                                 ["tracking_uri"])
    parent = client.get_run(study.parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{study.parent_run_id}'")
    assert sorted(r.info.run_name for r in children) == ["concat-seed0-train", "concat-seed1-train",
                                                         "text_only-seed0-train", "text_only-seed1-train"]
    assert parent.data.metrics["concat/micro_f1_mean"] == pytest.approx(study.table["concat"]["micro_f1_mean"])
    logged = {a.path for a in client.list_artifacts(study.parent_run_id, "search")}
    assert {"search/table.md", "search/table.json", "search/table.png"} <= logged  # a picture too (studies.figure)
    assert client.search_registered_models() == []  # no row registered itself (a text-only row as champion)
    from mmlnb_dist.cli import main  # the way the study's log line gives to register a row: by its run folder

    row_run = tmp_path / "runs" / "baselines-study" / "concat-seed0"
    assert main(["register", "--run", str(row_run), "--name", "chosen"]) == 0
    assert [m.name for m in client.search_registered_models()] == ["chosen"]

    again = run_study(cfg, rows=["text_only", "concat"], seeds=[0, 1])
    assert sorted(again.skipped) == ["concat-seed0", "concat-seed1", "text_only-seed0", "text_only-seed1"]
    assert again.table["concat"]["micro_f1"] == study.table["concat"]["micro_f1"]
    assert again.parent_run_id == study.parent_run_id

    # Other rows or seeds are another study: their own parent run (the first one's params named the first study's
    # rows and seeds, and its text_only/* metrics stayed beside the new table's). Its runs are up to date: cheap.
    other = run_study(cfg, rows=["concat"], seeds=[0])
    assert other.skipped == ["concat-seed0"] and other.parent_run_id != study.parent_run_id
    mixed = client.get_run(other.parent_run_id).data
    assert mixed.params["rows"] == "concat" and mixed.params["seeds"] == "0", mixed.params
    assert not any(k.startswith("text_only/") for k in mixed.metrics) and "concat/micro_f1_mean" in mixed.metrics
    assert client.get_run(study.parent_run_id).data.params["seeds"] == "0,1"  # the first study's run as it was
    assert run_study(cfg, rows=["concat"], seeds=[0]).parent_run_id == other.parent_run_id


@pytest.mark.parametrize("rows, seeds, message", [
    (["concat", "nonsense"], [0], "unknown row(s) nonsense"),
    (["concat"], [], "--seeds"),
    # one run counted twice: "mean ± std over seeds 0, 0" with a std of 0 read as a perfectly stable model
    (["concat"], [0, 0], "--seeds: seed 0 is listed twice"),
    (["concat", "concat"], [0], "--rows: concat is listed twice"),
    # named as the flag it came from, not as each row's run.seed
    (["concat"], [0, -1], "--seeds: -1 is negative (run.seed takes 0 or more)"),
])
def test_bad_rows_or_seeds_are_refused_before_any_run(shards, tmp_path, rows, seeds, message):
    from mmlnb_dist.studies import run_study

    cfg = clip_config(shards, tmp_path / "runs", name="bad")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_study(cfg, rows=rows, seeds=seeds)
    assert not (tmp_path / "runs").exists()


def test_a_row_whose_overrides_do_not_validate_names_the_row_before_any_run(shards, tmp_path, monkeypatch):
    from mmlnb_dist.recipes.clip import variants
    from mmlnb_dist.studies import run_study

    monkeypatch.setattr(variants, "rows", lambda cfg: {"concat": ("ok", []),
                                                       "broken": ("bad", ["clip.model.fusion=nonsense"])})
    cfg = clip_config(shards, tmp_path / "runs", name="broken")
    with pytest.raises(ConfigError, match="ablation row 'broken'"):
        run_study(cfg, seeds=[0])
    assert not (tmp_path / "runs").exists()


def test_every_row_of_the_fusion_table_is_a_valid_config_of_the_demo_profile(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.studies import row_config, study_rows

    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}"])
    rows, metrics = study_rows(cfg)
    assert list(rows)[0] == "full" and len(metrics) == 7
    # the paper's Table 2: every row, "no VLM fine-tuning" included
    assert set(rows) == {"full", "no_text", "no_image", "no_fine_tune", "concat", "no_curriculum", "fixed_alpha"}
    built = {name: row_config(cfg, name, overrides, 0, tmp_path / "s") for name, (_, overrides) in rows.items()}
    assert built["no_text"].fusion.model.mode == "image_only"
    assert built["no_curriculum"].fusion.curriculum.enabled is False
    assert built["fixed_alpha"].fusion.model.fixed_alpha == 0.5
    assert {c.run.seed for c in built.values()} == {0}


def test_one_seed_has_no_spread_instead_of_a_spread_of_zero():
    """`--seeds 0` (the default): the standard deviation is undefined, not 0; the table shows the values alone and
    its heading says how to get mean ± std, and table.json holds null."""
    from mmlnb_dist.studies import format_table, summarise

    rows = {"full": ("the paper's model", ()), "concat": ("concatenation", ())}
    results = {("full", 0): {"test/balanced_accuracy": 0.9917}, ("concat", 0): {"test/balanced_accuracy": 0.95},
               ("full", 1): {"test/balanced_accuracy": 0.9}, ("concat", 1): {"test/balanced_accuracy": 0.85}}
    for r in results.values():
        r["run_dir"] = "x"
    one = summarise(results, rows, ["full", "concat"], [0], ["balanced_accuracy"], "test")
    assert one["full"]["balanced_accuracy_std"] is None and one["full"]["balanced_accuracy_mean"] == 0.9917
    table = format_table(one, ["balanced_accuracy"], "test", "s", [0])
    assert "±" not in table.split("\n", 1)[1] and "| full | 0.9917 |" in table
    assert "seed 0 only" in table.splitlines()[0] and "--seeds 0,1,2" in table.splitlines()[0]
    two = summarise(results, rows, ["full", "concat"], [0, 1], ["balanced_accuracy"], "test")
    assert two["full"]["balanced_accuracy_std"] == pytest.approx(statistics.stdev([0.9917, 0.9]))
    assert f"| full | 0.9459 ± {statistics.stdev([0.9917, 0.9]):.4f} |" in format_table(
        two, ["balanced_accuracy"], "test", "s", [0, 1])


def test_a_row_that_diverges_is_a_row_of_the_table_not_the_end_of_the_study(shards, tmp_path, monkeypatch):
    """A row whose training diverges (its loss or weights turn NaN) used to stop `ablate` with the error, leaving no
    table for the rows that trained. It is a result: the table says the row diverged (and where), the other rows
    keep their numbers, and a rerun trains nothing (the same settings would diverge at the same step)."""
    from mmlnb_dist.recipes.clip import variants
    from mmlnb_dist.studies import run_study

    monkeypatch.setattr(variants, "rows", lambda cfg: {"concat": ("the reference", []),
                                                       "hot": ("lr 1e3", ["train.lr=1e3", "clip.tower_lr=1e3"])})
    cfg = clip_config(shards, tmp_path / "runs", "train.epochs=2", name="hot")
    study = run_study(cfg, seeds=[0])
    hot, concat = study.table["hot"], study.table["concat"]
    assert hot["diverged"][0].startswith("training diverged at step"), hot
    assert concat["diverged"] == [None] and 0.0 <= concat["micro_f1_mean"] <= 1.0
    table = (tmp_path / "runs" / "hot-study" / "table.md").read_text()
    hot_line = next(line for line in table.splitlines() if line.startswith("| hot |"))
    assert "diverged" in hot_line and "nan" not in hot_line, table
    saved = json.loads((tmp_path / "runs" / "hot-study" / "table.json").read_text())
    assert saved["rows"]["hot"]["diverged"] == hot["diverged"]
    again = run_study(cfg, seeds=[0])
    assert sorted(again.skipped) == ["concat-seed0", "hot-seed0"]
    assert again.table["hot"]["diverged"] == hot["diverged"]

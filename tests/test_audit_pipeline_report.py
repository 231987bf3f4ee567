"""Mutation-audit guards of the pipeline's final report (`mmlnb_dist.pipeline.report`): the paper's Table 1 in %,
both splits and both levels, a missing value shown as n/a, the stage table's notes and total, the predict line a
user pastes, where the alias serves, and every section `final_report` assembles from its inputs."""
from __future__ import annotations

import shlex

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline.report import (PAPER_COLUMNS, final_report, predict_line,
                                        results_table, served_model, stage_rows)
from mmlnb_dist.pipeline.stages import RUNS, SKIPPED_IMAGES, WALL_SECONDS, StageResult

URI = "sqlite:///m.db"
KEYS = [key for key, _ in PAPER_COLUMNS] + ["quadratic_kappa"]


def _metrics(scale: float = 0.1):
    """The paper's metrics with distinct values: 0.1, 0.2, ... (times `scale` / 0.1)."""
    return {key: round((i + 1) * scale, 4) for i, key in enumerate(KEYS)}


def test_a_metric_the_evaluation_could_not_compute_shows_as_n_a_not_nan():
    """AUROC is NaN when a split lacks a class: the table says n/a (and None too) instead of "nan"."""
    metrics = {**_metrics(), "auroc": float("nan"), "quadratic_kappa": None}
    row = results_table({"patch": {"test": metrics}})[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:] == ["10.00", "20.00", "30.00", "40.00", "50.00", "60.00", "n/a", "n/a"], row


def test_results_table_has_patch_then_slide_rows_for_each_split():
    """Both levels, each split in the evaluation's order (test first), each row with its own numbers."""
    evaluation = {"patch": {"test": _metrics(0.1), "val": _metrics(0.11)},
                  "slide": {"test": {**_metrics(0.12), "num_samples": 3.0}, "val": _metrics(0.09)}}
    rows = results_table(evaluation)[2:]
    assert [r.split("|")[1:3] for r in rows] == [[" patch ", " test "], [" patch ", " val "],
                                                [" slide ", " test (n=3) "], [" slide ", " val "]]
    assert [float(r.split("|")[3]) for r in rows] == pytest.approx([10.0, 11.0, 12.0, 9.0])


def test_stage_rows_note_a_resumed_stage_only_when_it_took_more_than_one_run(tmp_path):
    """A stage finished in one run has no "resumed" note; one resumed after an interruption says over how many
    runs; a stage reused before --from keeps the time it took when it ran; the total adds every row."""
    once = StageResult("train", tmp_path / "a", "f", False, 12.0, {WALL_SECONDS: 12.0, RUNS: 1})
    resumed = StageResult("train", tmp_path / "b", "f", False, 5.0, {WALL_SECONDS: 20.0, RUNS: 3})
    reused = StageResult("shards", tmp_path / "c", "f", True, 0.5, {WALL_SECONDS: 7.0, RUNS: 1}, status="reused")
    rows = stage_rows([once, resumed, reused])
    assert rows[2] == f"| train | ran | 12.0 s | `{tmp_path / 'a'}` |"
    assert rows[3] == f"| train | ran | 5.0 s (resumed: 20.0 s over 3 runs) | `{tmp_path / 'b'}` |"
    assert rows[4] == f"| shards | reused (before --from) | 0.5 s (took 7.0 s when it ran) | `{tmp_path / 'c'}` |"
    assert rows[5] == "| total | | 17.5 s | |"


def _cfg(tmp_path, *overrides):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", *overrides])


def test_the_predict_line_scores_the_test_split_of_the_shards_in_the_pipeline_store(tmp_path):
    """The pasted line must run: `--split test`, the model, the store it is in (`--uri`), paths with spaces
    quoted; a model that reads no descriptions gets no VLM arguments, one that does gets the VLM's."""
    cfg = _cfg(tmp_path)
    shards, out = str(tmp_path / "my shards"), str(tmp_path / "out dir" / "p.csv")
    argv = shlex.split(predict_line(cfg, "models:/m/2", shards, URI, out, False, None))
    assert argv == ["mmlnb-dist", "predict", shards, "--split", "test", "--model", "models:/m/2", "--out", out,
                    "--uri", URI]
    reads = shlex.split(predict_line(cfg, "models:/m/2", shards, URI, out, True, "a/adapter"))
    assert reads[reads.index("--vlm") + 1] == str(cfg.vlm.model) and reads[reads.index("--adapter") + 1] == "a/adapter"
    assert reads[reads.index("--uri") + 1] == URI


def test_an_older_record_whose_alias_moved_serves_the_alias():
    """A registration recorded before `alias_version` was kept: the alias moved to this version, so the predict
    line scores `@champion`, which is that version."""
    registration = {"registered": True, "name": "m", "version": 3, "alias": "champion", "alias_moved": True}
    assert served_model(registration) == "models:/m@champion"
    assert served_model({**registration, "alias": None}) == "models:/m/3"


def _registered(**extra):
    return {"registered": True, "name": "m", "version": "2", "alias": "champion", "alias_version": "2",
            "alias_moved": True, "reason": "first version", **extra}


def test_final_report_has_every_section_its_inputs_give(tmp_path):
    """Results (patch and slide, %), the copies-of-train caveat, the images a stage left out, the registered model
    and where the alias serves, the predict block and the log file."""
    cfg = _cfg(tmp_path)
    stages = [StageResult("shards", tmp_path / "shards", "f", False, 1.0, {SKIPPED_IMAGES: "2 unreadable"})]
    evaluation = {"patch": {"test": _metrics()}, "slide": {"test": _metrics()},
                  "copies_of_train": {"test": 2, "val": 1}}
    report = final_report(cfg, stages, evaluation, _registered(), URI, "mmlnb-dist predict X", "/tmp/p.log")
    assert "| patch | test | 10.00 |" in report and "| slide | test | 10.00 |" in report
    caveat = next(line for line in report.splitlines() if line.startswith("**Caveat:**"))
    assert "2 test" in caveat and "1 val" in caveat and "copies of train images" in caveat
    assert "- shards: 2 unreadable" in report
    assert "- registered: `models:/m/2` (first version)" in report
    assert "- serving URI: `models:/m@champion` (version 2)" in report
    assert "```\nmmlnb-dist predict X\n```" in report
    assert "`/tmp/p.log`" in report
    bare = final_report(cfg, stages[:0], None, None, URI, None, None)
    assert "## Results" not in bare and "registered" not in bare and "```" not in bare and "Full log" not in bare


def test_a_registration_that_did_not_happen_says_why_and_names_no_model(tmp_path):
    """A register stage kept open (no MLflow run yet): the report gives its reason, no `models:/` URI."""
    registration = {"registered": False, "reason": "the training run never reached the tracking server (down)"}
    report = final_report(_cfg(tmp_path), [], None, registration, URI, None, None)
    assert f"- not registered: {registration['reason']}" in report
    assert "models:/" not in report and "- registered:" not in report


def test_no_serving_line_without_an_alias(tmp_path):
    report = final_report(_cfg(tmp_path), [], None, _registered(alias=None, alias_version=None), URI, None, None)
    assert "- registered: `models:/m/2`" in report and "serving URI" not in report

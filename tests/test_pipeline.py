"""The demo pipeline's stage bookkeeping: skip what is up to date, resume what was interrupted, rebuild what
is stale, and never delete a folder the pipeline did not make."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.pipeline import fingerprint, run_stage


def _writer(out, calls):
    def work(resume):
        calls.append(resume)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.txt").write_text(str(len(calls)))
        return {"n": len(calls)}
    return work


def test_stage_runs_once_then_skips_until_its_fingerprint_changes(tmp_path):
    out, calls, logs = tmp_path / "stage", [], []
    first = run_stage("s", out, fingerprint("a", 1), _writer(out, calls), logs.append)
    again = run_stage("s", out, fingerprint("a", 1), _writer(out, calls), logs.append)
    changed = run_stage("s", out, fingerprint("a", 2), _writer(out, calls), logs.append)
    assert (first.skipped, again.skipped, changed.skipped) == (False, True, False)
    assert calls == [False, False]
    assert again.info["n"] == 1 and changed.info["n"] == 2
    assert any("skipped" in line for line in logs)
    assert any("rebuilding" in line for line in logs)


def test_interrupted_stage_resumes_with_the_same_fingerprint(tmp_path):
    out, calls = tmp_path / "stage", []

    def killed(resume):
        calls.append(resume)
        out.mkdir(parents=True, exist_ok=True)
        (out / "partial.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage("s", out, "fp", killed, lambda _: None)
    seen = []

    def finish(resume):
        seen.append((resume, (out / "partial.txt").exists()))
        return {"ok": True}

    ran = run_stage("s", out, "fp", finish, lambda _: None)
    assert not ran.skipped and ran.info["ok"] is True
    assert seen == [(True, True)]  # resumed, and the partial work was kept for it


def test_a_stage_whose_output_was_deleted_runs_again_instead_of_being_skipped(tmp_path):
    """Deleting an output folder is how users ask for a rebuild; its record (a hidden file beside it) said done,
    so the stage was skipped and later stages read a folder that was no longer there."""
    import shutil

    out, calls, logs = tmp_path / "stage", [], []
    run_stage("s", out, "fp", _writer(out, calls), logs.append)
    shutil.rmtree(out)
    again = run_stage("s", out, "fp", _writer(out, calls), logs.append)
    assert not again.skipped and calls == [False, False] and (out / "result.txt").read_text() == "2"
    assert any(f"{out} is gone" in line for line in logs), logs

    def killed(resume):  # interrupted, then its partial output deleted: nothing is left to resume
        out.mkdir(parents=True, exist_ok=True)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage("s", out, "fp2", killed, lambda _: None)
    shutil.rmtree(out)
    run_stage("s", out, "fp2", _writer(out, calls), lambda _: None)
    assert calls[-1] is False  # started afresh, not told to resume


def test_stale_output_is_removed_before_a_changed_stage_reruns(tmp_path):
    out, calls = tmp_path / "stage", []
    run_stage("s", out, "old", _writer(out, calls), lambda _: None)
    (out / "stale.txt").write_text("from the old inputs")
    run_stage("s", out, "new", _writer(out, calls), lambda _: None)
    assert not (out / "stale.txt").exists()


def test_a_folder_the_pipeline_did_not_make_is_never_deleted(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("user data")
    with pytest.raises(UserError, match="not made by this pipeline"):
        run_stage("s", out, "fp", _writer(out, []), lambda _: None)
    assert (out / "precious.txt").read_text() == "user data"


def test_fingerprint_is_order_insensitive_for_mappings_and_sensitive_to_values():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


# --- the `pipeline` command's slices (`--from` / `--until`), without running a stage ------------------------

def _cfg(tmp_path, *overrides):
    from mmlnb_dist.config import load_config

    return load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", f"data.synth_dir={tmp_path / 'src'}",
                                    f"data.shards={tmp_path / 'shards'}", *overrides])


def test_an_unknown_stage_name_lists_the_valid_ones(tmp_path):
    from mmlnb_dist.pipeline import STAGES, PipelineInputs, run_pipeline

    with pytest.raises(UserError) as err:
        run_pipeline(_cfg(tmp_path), PipelineInputs(synthetic=True), first="trian")
    assert "--from trian: no such stage" in str(err.value)
    assert all(name in str(err.value) for name in STAGES)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "src").exists()  # refused before any work


def test_a_stage_this_pipeline_does_not_have_is_refused(tmp_path):
    from mmlnb_dist.pipeline import PipelineInputs, run_pipeline, stages_for

    cfg = _cfg(tmp_path)
    assert stages_for(cfg, PipelineInputs(synthetic=True)) == [
        "synth", "shards", "finetune-vlm", "describe", "train", "evaluate", "register"]
    with pytest.raises(UserError, match="--until tile: not a stage of this pipeline"):
        run_pipeline(cfg, PipelineInputs(synthetic=True), last="tile")
    with pytest.raises(UserError, match="--from train comes after --until shards"):
        run_pipeline(cfg, PipelineInputs(synthetic=True), first="train", last="shards")
    with pytest.raises(UserError, match="--slides and --labels go together"):
        stages_for(cfg, PipelineInputs(slides=tmp_path))
    clip = _cfg(tmp_path, "train.recipe=clip", "train.best_metric=micro_f1")
    assert "finetune-vlm" not in stages_for(clip, PipelineInputs(synthetic=True))  # CLIP trains on captions


def test_a_slice_whose_inputs_are_missing_names_the_missing_stage(tmp_path):
    from mmlnb_dist.pipeline import PipelineInputs, run_pipeline

    with pytest.raises(UserError) as err:
        run_pipeline(_cfg(tmp_path), PipelineInputs(synthetic=True), first="describe")
    assert "--from describe: the output of the earlier stage 'synth'" in str(err.value)
    assert "is missing" in str(err.value) and "--from synth" in str(err.value)


def test_no_source_and_no_shard_set_says_what_to_give(tmp_path):
    from mmlnb_dist.pipeline import PipelineInputs, run_pipeline

    with pytest.raises(UserError, match="give --slides DIR --labels CSV, --patches DIR_OR_CSV or --synthetic"):
        run_pipeline(_cfg(tmp_path), PipelineInputs())


def test_a_rank0_stage_runs_its_work_on_rank_0_only_and_the_others_read_its_record(tmp_path):
    """`main_only` stages (synth, tile, shards, register): rank 0 works and writes the record; another rank
    neither works nor writes, and takes rank 0's record as the stage's result."""
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.pipeline import read_stage

    out, calls = tmp_path / "stage", []
    main = run_stage("s", out, "a", _writer(out, calls), lambda _: None, main_only=True)
    other = run_stage("s", out, "b", _writer(out, calls), lambda _: None, env=DistEnv(rank=1, world_size=2),
                      main_only=True)
    assert calls == [False] and main.info["n"] == 1
    record = read_stage(out)
    assert other.info == record and record.pop("wall_seconds") >= 0  # (how long it took: the rerun's report)
    assert record == {"fingerprint": "a", "status": "done", "n": 1, "runs": 1}


def test_the_report_shows_how_good_the_descriptions_are_when_a_describe_stage_wrote_them(tmp_path):
    """The class-naming rate per split, distinct texts and reference overlap, from describe's own quality report;
    nothing when the run had no describe stage or the stage left no report."""
    import json

    from mmlnb_dist.config import load_config
    from mmlnb_dist.pipeline.report import final_report
    from mmlnb_dist.pipeline.stages import StageResult

    cfg = load_config("cpu-demo")
    out = tmp_path / "described"
    out.mkdir()
    quality = {"n": 600, "words": {"mean": 22.5, "min": 17.0, "p50": 22.0, "p90": 25.0, "max": 25.0},
               "empty_share": 0.0, "repeated_share": 1.0, "distinct": 5,
               "reference": {"rouge_l": 0.307, "bleu4": 0.175, "n": 600},
               "class_naming": {"rate": 0.768, "by_split": {"test": 0.833, "train": 0.731, "val": 0.817}}}
    (out / "quality_report.json").write_text(json.dumps(quality))
    stages = [StageResult("train", tmp_path / "run", "f", False, 1.0),
              StageResult("describe", out, "f", False, 5.0)]
    report = final_report(cfg, stages, None, None, "sqlite:///m.db", None, None)
    section = report[report.index("## Descriptions"):report.index("## Stages")]
    assert str(out) in section
    assert "- descriptions: 600 (5 distinct)" in section
    assert "- vs references (n=600): ROUGE-L 0.307, BLEU-4 0.175" in section
    assert "- names its class: 0.77 (test 0.83, train 0.73, val 0.82)" in section
    (out / "quality_report.json").unlink()
    assert "## Descriptions" not in final_report(cfg, stages, None, None, "sqlite:///m.db", None, None)
    assert "## Descriptions" not in final_report(cfg, stages[:1], None, None, "sqlite:///m.db", None, None)


def test_the_stage_table_says_how_much_of_a_stage_was_building_its_base_model(tmp_path):
    """On first use the tiny VLM is built inside finetune-vlm (its distilled tower: about 16 s); the stage row says
    so instead of letting the build pass for fine-tuning. A stage that skipped or built nothing has no note."""
    from mmlnb_dist.pipeline.report import stage_rows
    from mmlnb_dist.pipeline.stages import StageResult

    built = StageResult("finetune-vlm", tmp_path / "vlm", "f", False, 56.8, {"base_model_seconds": 20.34})
    cached = StageResult("finetune-vlm", tmp_path / "vlm", "f", False, 38.0, {"base_model_seconds": 0.01})
    skipped = StageResult("finetune-vlm", tmp_path / "vlm", "f", True, 0.0, {"base_model_seconds": 20.34},
                          status="skipped")
    rows = stage_rows([built, cached, skipped])
    assert rows[2] == f"| finetune-vlm | ran | 56.8 s (20.3 s of it building the base model, once per cache) | " \
                      f"`{tmp_path / 'vlm'}` |"
    assert rows[3] == f"| finetune-vlm | ran | 38.0 s | `{tmp_path / 'vlm'}` |"
    assert rows[4] == f"| finetune-vlm | skipped (up to date) | 0.0 s | `{tmp_path / 'vlm'}` |"


def test_a_rerun_report_keeps_how_long_each_skipped_stage_took_when_it_ran(tmp_path):
    """A rerun skips every stage that is up to date, and its report said 0.0 s for each: the times a user reran the
    demo to look at were gone. The stage record keeps the wall time of the run that built the output."""
    import time

    from mmlnb_dist.pipeline.report import stage_rows

    def work(resume):
        time.sleep(0.3)
        (tmp_path / "out").mkdir()
        return {}

    first = run_stage("train", tmp_path / "out", "fp", work)
    again = run_stage("train", tmp_path / "out", "fp", work)
    assert first.status == "ran" and again.status == "skipped"
    row = stage_rows([again])[2]
    assert row == f"| train | skipped (up to date) | 0.0 s (took {first.seconds:.1f} s when it ran) | " \
                  f"`{tmp_path / 'out'}` |", row
    assert first.seconds >= 0.3


def test_a_recipe_without_the_paper_columns_reports_its_own_metrics_as_computed():
    """The CLIP multi-label report: its metrics as fractions under a heading without "%", test first with each
    split's size, and none of the fusion table's notes (slide level, kappa), which describe rows it does not have."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.pipeline.report import final_report

    clip = load_config("clip-multilabel")
    evaluation = {"patch": {"val": {"micro_f1": 0.2741, "macro_auroc": 0.645, "num_samples": 120.0},
                            "test": {"micro_f1": 0.2413, "macro_auroc": 0.6042, "num_samples": 140.0}}}
    report = final_report(clip, [], evaluation, None, "sqlite:///m.db", None, None)
    results = report[report.index("## Results"):report.index("## Stages")]
    heading = results.splitlines()[0]
    assert "%" not in heading and f"val {clip.train.best_metric}" in heading, heading
    assert "| metric | test (n=140) | val (n=120) |" in results
    assert "| micro_f1 | 0.2413 | 0.2741 |" in results and "num_samples" not in results
    assert "slide level" not in results and "Kappa" not in results

    fusion = load_config("cpu-demo")
    metrics = {k: 0.5 for k in ("accuracy", "balanced_accuracy", "kappa", "f1_weighted", "precision_weighted",
                                "recall_weighted", "auroc", "quadratic_kappa")}
    report = final_report(fusion, [], {"patch": {"test": metrics}}, None, "sqlite:///m.db", None, None)
    results = report[report.index("## Results"):report.index("## Stages")]
    assert results.splitlines()[0].endswith(", %") and "| patch | test | 50.00 |" in results
    assert "slide level" in results and "Kappa" in results


def test_shards_names_the_tiling_stage_when_the_pipeline_starts_from_slides(tmp_path):
    """With --slides the shard set is written by `tile`; `--until shards` (as the README's "slides to shards" reads)
    was refused as "not a stage of this pipeline". It now means the stage that writes the shards."""
    from mmlnb_dist.pipeline import PipelineInputs, stages_for
    from mmlnb_dist.pipeline.flow import check_slice

    names = stages_for(_cfg(tmp_path), PipelineInputs(slides=tmp_path, labels=tmp_path / "labels.csv"))
    assert "shards" not in names
    assert check_slice(names, None, "shards") == (None, "tile")
    assert check_slice(names, "shards", "train") == ("tile", "train")
    synthetic = stages_for(_cfg(tmp_path), PipelineInputs(synthetic=True))
    assert check_slice(synthetic, "shards", None) == ("shards", None)



def test_a_run_without_mlflow_tracking_names_no_mlflow_store_in_its_report(tmp_path):
    """Found running the pipeline with tracking.backends=[stdout] on the GPU machine (no MLflow there): the report
    named an MLflow store (and a `mlflow ui` line for it) that nothing had written. It now says MLflow was off and
    how to make the training run's MLflow run afterwards."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.pipeline.report import final_report
    from mmlnb_dist.pipeline.stages import StageResult

    train = StageResult("train", tmp_path / "runs" / "cpu-demo-fusion", "f", False, 1.0,
                        {"run_dir": str(tmp_path / "runs" / "cpu-demo-fusion")})
    off = final_report(load_config("cpu-demo", ["tracking.backends=[stdout]"]), [train], None, None,
                       "sqlite:///m.db", None, None)
    assert "sqlite:///m.db" not in off and "mlflow ui" not in off
    assert "- MLflow: off (tracking.backends: stdout)" in off
    assert f"mmlnb-dist tracking import {tmp_path / 'runs' / 'cpu-demo-fusion'}" in off
    on = final_report(load_config("cpu-demo"), [train], None, None, "sqlite:///m.db", None, None)
    assert "- MLflow store: `sqlite:///m.db` (browse: `mlflow ui --backend-store-uri sqlite:///m.db`)" in on


@pytest.mark.parametrize("alias_at, served", [("1", "models:/cpu-demo/2"), ("2", "models:/cpu-demo@champion"),
                                               (None, "models:/cpu-demo/2")])
def test_the_predict_line_and_serving_uri_name_the_new_version_unless_it_holds_the_alias(tmp_path, alias_at, served):
    """Found by the auditor: a second run that did not beat the champion (its alias stayed on version 1) printed
    "serving URI: models:/cpu-demo@champion" and a predict line with `--model models:/cpu-demo@champion`, which
    scores version 1, not the model whose numbers the report headlines. The predict line names the version just
    registered unless the alias is on it; the serving line says where the alias stays. `alias_at` None: a record
    written before the registration kept where the alias is (only whether it moved)."""
    from mmlnb_dist.pipeline.flow import PipelineRun, _finish
    from mmlnb_dist.pipeline.stages import StageResult

    registration = {"registered": True, "name": "cpu-demo", "version": "2", "alias": "champion",
                    "alias_moved": False, "reason": "val/balanced_accuracy 0.3 does not beat 0.5 (version 1 keeps "
                                                    "'champion')"}
    if alias_at is not None:
        registration["alias_version"] = alias_at
    run = PipelineRun(registration=registration)
    shards = StageResult("shards", tmp_path / "shards", "f", True, 0.0)
    _finish(_cfg(tmp_path), run, shards)
    assert f"--model {served} " in run.predict, run.predict
    if alias_at == "2":
        assert "- serving URI: `models:/cpu-demo@champion` (version 2)" in run.report
    elif alias_at == "1":
        assert "- serving URI: `models:/cpu-demo@champion` stays on version 1; this run's model is " \
               "`models:/cpu-demo/2`" in run.report, run.report
    else:
        assert "- serving URI: `models:/cpu-demo@champion` did not move to version 2" in run.report, run.report
    assert (_cfg(tmp_path).run.output_dir / "cpu-demo-pipeline" / "report.md").read_text() == run.report


def test_each_results_table_value_sits_under_its_own_metric_header():
    """The report's results table puts every metric under the column that names it, in %: a user reading the
    table would otherwise take one metric's value (e.g. AUROC) for another's (accuracy)."""
    from mmlnb_dist.pipeline.report import PAPER_COLUMNS, results_table

    metrics = {key: (i + 1) * 0.11 for i, (key, _) in enumerate(PAPER_COLUMNS)}  # 0.11, 0.22, ... 0.77
    metrics.update(quadratic_kappa=0.88, num_samples=40)
    rows = results_table({"patch": {"test": metrics}, "slide": {"test": {**metrics, "num_samples": 4}}})
    assert rows[0] == "| level | split | Acc | BAcc | Kappa | F1 | Prec | Rec | AUROC | QWK(ord) |"
    assert rows[2:] == ["| patch | test (n=40) | 11.00 | 22.00 | 33.00 | 44.00 | 55.00 | 66.00 | 77.00 | 88.00 |",
                        "| slide | test (n=4) | 11.00 | 22.00 | 33.00 | 44.00 | 55.00 | 66.00 | 77.00 | 88.00 |"]

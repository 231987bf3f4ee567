"""Mutation audit of the `pipeline` and `ablate` commands (`commands/pipeline.py`, `commands/ablate.py`): each flag
reaches the library as asked, the console gets the report / table and where the log is, the log file is opened
where the command says, and `ablate --list` lists without running. The library calls are stand-ins here."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from support.cli import run_cli


@pytest.fixture
def pipeline_calls(monkeypatch):
    """`check_pipeline` and `run_pipeline` as stand-ins that record what the command hands them."""
    import mmlnb_dist.pipeline
    from mmlnb_dist.pipeline import flow

    seen = {}

    def check_pipeline(cfg, inputs, first, last, env, overrides=None):
        seen.update(inputs=inputs, first=first, last=last, overrides=overrides, run_name=cfg.run.name)
        return "the plan"

    def run_pipeline(cfg, inputs, env=None, plan=None):
        seen.update(plan=plan, ran_inputs=inputs)
        logging.getLogger("mmlnb_dist.pipeline").info("a stage ran")
        return SimpleNamespace(report="| stage | status |\n| train | ran |")

    monkeypatch.setattr(flow, "check_pipeline", check_pipeline)
    monkeypatch.setattr(mmlnb_dist.pipeline, "run_pipeline", run_pipeline)
    return seen


def test_pipeline_hands_its_flags_to_the_checks_runs_their_plan_and_prints_the_report(tmp_path, pipeline_calls):
    code, out, err = run_cli(["pipeline", "--slides", str(tmp_path / "wsi"), "--labels", str(tmp_path / "l.csv"),
                              "--from", "describe", "--until", "evaluate", "--config", "cpu-demo",
                              f"run.output_dir={tmp_path / 'runs'}", "run.name=night", "train.lr=0.01"])
    assert code == 0, err
    seen = pipeline_calls
    assert (seen["first"], seen["last"], seen["plan"]) == ("describe", "evaluate", "the plan")
    inputs = seen["inputs"]
    assert (inputs.slides, inputs.labels, inputs.patches, inputs.synthetic) == \
        (tmp_path / "wsi", tmp_path / "l.csv", None, False)
    assert seen["ran_inputs"] is inputs
    assert "train.lr=0.01" in seen["overrides"] and "run.name=night" in seen["overrides"]
    assert out.endswith("| stage | status |\n| train | ran |\n"), out
    assert "a stage ran" in (tmp_path / "runs" / "night-pipeline" / "pipeline.log").read_text()


def test_pipeline_hands_on_patches_or_the_synthetic_set(tmp_path, pipeline_calls):
    common = ["--config", "cpu-demo", f"run.output_dir={tmp_path / 'runs'}"]
    assert run_cli(["pipeline", "--patches", str(tmp_path / "p.csv"), *common])[0] == 0
    inputs = pipeline_calls["inputs"]
    assert (inputs.patches, inputs.slides, inputs.synthetic, pipeline_calls["first"]) == \
        (tmp_path / "p.csv", None, False, None)
    assert run_cli(["pipeline", "--synthetic", *common])[0] == 0
    assert pipeline_calls["inputs"].synthetic is True and pipeline_calls["inputs"].patches is None


# --- ablate -----------------------------------------------------------------------------------------------------

def _ablate(monkeypatch, tmp_path, *argv, parent_run_id=None):
    from mmlnb_dist import studies

    seen = {}

    def run_study(cfg, rows, seeds, descriptions=None, train_jobs=None):
        seen.update(rows=rows, seeds=seeds, run_dir=studies.study_folder(cfg))
        logging.getLogger("mmlnb_dist.studies").info("row full, seed 0: trained")
        return SimpleNamespace(markdown="| row | accuracy |", study_dir=studies.study_folder(cfg),
                               parent_run_id=parent_run_id, failed={})

    monkeypatch.setattr(studies, "run_study", run_study)
    code, out, err = run_cli(["ablate", "--config", "cpu-demo", f"run.output_dir={tmp_path}", "run.name=study",
                              *argv])
    assert code == 0, err
    return out, seen


def test_ablate_says_where_its_table_figure_and_log_are_and_logs_there(monkeypatch, tmp_path):
    out, seen = _ablate(monkeypatch, tmp_path)
    study = tmp_path / "study-study"  # beside the train run of the config (tmp_path / "study"), not in it
    assert seen["run_dir"] == study
    assert out.splitlines() == [f"study: {study}", "| row | accuracy |",
                                f"table: {study / 'table.md'}, as a figure: {study / 'table.png'}",
                                f"log: {study / 'study.log'}  (every run's full metric tables)"]
    assert "row full, seed 0: trained" in (study / "study.log").read_text()


def test_ablate_names_its_mlflow_parent_run_when_there_is_one(monkeypatch, tmp_path):
    out, _ = _ablate(monkeypatch, tmp_path, parent_run_id="0a1b2c")
    assert f"as a figure: {tmp_path / 'study-study' / 'table.png'}  (MLflow parent run 0a1b2c)" in out, out


def test_ablate_list_prints_the_recipe_s_rows_and_runs_nothing(monkeypatch, tmp_path):
    from mmlnb_dist import studies
    from mmlnb_dist.config import load_config

    monkeypatch.setattr(studies, "run_study", lambda *a, **k: pytest.fail("--list ran the study"))
    code, out, err = run_cli(["ablate", "--config", "cpu-demo", "--list", f"run.output_dir={tmp_path}"])
    assert code == 0, err
    rows, _ = studies.study_rows(load_config("cpu-demo", [f"run.output_dir={tmp_path}"]))
    assert len(rows) > 1 and out.splitlines() == [
        f"{name:<14} {description}  [{' '.join(overrides)}]" for name, (description, overrides) in rows.items()]
    assert not any(tmp_path.iterdir())  # no study folder, no log

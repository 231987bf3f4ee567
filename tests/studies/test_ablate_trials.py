"""`ablate` with `tune.max_concurrent > 1`: the study's runs are Ray Tune trials (one per row x seed, run in Ray
worker processes), the table is built from their results as in-process, and since a trial trains through the
same stage record as the in-process path, a later in-process call finds every run up to date. The paths are
relative, as a user types them: Ray runs each trial in a folder of its own, so the study hands them over absolute."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support.clip import caption_shards, clip_config


@pytest.mark.slow
def test_rows_run_as_concurrent_ray_trials_and_an_in_process_rerun_skips_them(tmp_path, monkeypatch, capfd):
    from mmlnb_dist.studies import run_study
    from mmlnb_dist.tuning.study import train_as_trials

    monkeypatch.chdir(tmp_path)  # paths as a user types them: relative to where the command runs
    shards = caption_shards(Path("data"), n=48, size=32, test_fraction=0.25)
    assert not shards.is_absolute()
    cfg = clip_config(shards, Path("runs"), "train.epochs=1", "tune.max_concurrent=2", "tune.num_cpus=2",
                      "tracking.backends=[stdout,mlflow]", name="trials")  # concurrent runs: a local MLflow server
    study = run_study(cfg, rows=["text_only", "concat"], seeds=[0], train_jobs=train_as_trials)
    # The console keeps the runs' own lines and the study's; Tune's result box of every trial (two dozen metrics,
    # the study prints its table) and MLflow's "View run" link per run (to the study's server, gone once the
    # study ends) are noise
    console = "".join(capfd.readouterr())
    # (lines a trial prints as it starts: Ray forwards them within ~0.1 s, while its last lines may still be on their
    # way when the study shuts Ray down; they are in the trial's own log)
    assert "[stages] concat-seed0: running" in console and "[stages] text_only-seed0: running" in console, \
        console[-3000:]
    assert "View run" not in console and "result ─" not in console and "Trial status" not in console, console[-3000:]
    assert list(study.table) == ["concat", "text_only"] and study.skipped == []  # the reference row first
    trial_dirs = sorted(p.name for p in (study.study_dir / "tune" / "trials").iterdir() if p.is_dir())
    assert len(trial_dirs) == 2  # one Tune trial per run
    for row, entry in study.table.items():
        run_dir = Path(entry["runs"][0])
        stored = json.loads((run_dir / "metrics.json").read_text())
        assert entry["micro_f1"] == [pytest.approx(stored["test/micro_f1"])]
        record = json.loads((run_dir.parent / f".{run_dir.name}.stage.json").read_text())
        assert record["status"] == "done" and record["pid"] != os.getpid()  # trained in a Ray worker
        assert "epoch 0" in (run_dir.parent / f"{run_dir.name}.log").read_text()  # the trial's log, beside its run

    again = run_study(cfg, rows=["text_only", "concat"], seeds=[0])  # in process
    assert sorted(again.skipped) == ["concat-seed0", "text_only-seed0"]
    assert again.table["concat"]["micro_f1"] == study.table["concat"]["micro_f1"]


def test_a_run_whose_folder_was_deleted_is_not_up_to_date_for_the_trials_either(tmp_path):
    """The in-process path reruns a row whose run folder a user deleted (`run_stage`); the trial path read the
    hidden record alone and took the run as done, so the two paths disagreed on the same folder."""
    import shutil

    from mmlnb_dist.pipeline import run_stage
    from mmlnb_dist.studies import RowJob
    from mmlnb_dist.tuning.study import _up_to_date

    cfg = clip_config(tmp_path / "shards", tmp_path / "runs", name="gone")
    cfg.run.name = "concat-seed0"
    job = RowJob("concat", 0, cfg, "fp")

    def work(resume):
        Path(cfg.run.dir).mkdir(parents=True)
        return {"metrics": {"test/micro_f1": 0.5}}

    run_stage(job.name, Path(cfg.run.dir), "fp", work, lambda _: None)
    assert _up_to_date(job)
    shutil.rmtree(cfg.run.dir)
    assert not _up_to_date(job)

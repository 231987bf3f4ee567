"""A study has a folder of its own, `<run.output_dir>/<run.name>-study`, beside the train run of the same config
(`<run.output_dir>/<run.name>`): `ablate` wrote its rows, table, cache and log into the train run's folder, so a
later `mmlnb-dist train` with the same config trained into the study (its checkpoints, config and export beside the
rows and table.md), and an `ablate` after a `train` filled the train run's folder. A folder that holds a run (its
config.yaml) is refused as a study's. The training is replaced by a stand-in (`train_jobs`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.clip import clip_config

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.recipes.clip.variants import METRICS


@pytest.fixture(autouse=True)
def no_process_group(monkeypatch):
    import mmlnb_dist.studies as studies

    monkeypatch.setattr(studies, "init_engine_process_group", lambda env, cfg: None)
    monkeypatch.setattr(studies, "require_shards", lambda path: None)  # the stand-in opens no shard set


def train_jobs(cfg, jobs):
    infos = {}
    for name, job in jobs.items():
        Path(job.cfg.run.dir).mkdir(parents=True)
        infos[name] = {"metrics": {f"{s}/{m}": 0.5 for s in ("val", "test") for m in METRICS}, "skipped": False}
    return infos


def _config(tmp_path):
    return clip_config(tmp_path / "no-shards", tmp_path / "runs", name="exp")


def test_the_study_leaves_the_train_runs_folder_alone(tmp_path):
    from mmlnb_dist.studies import run_study, study_folder

    cfg = _config(tmp_path)
    assert study_folder(cfg) == tmp_path / "runs" / "exp-study"
    study = run_study(cfg, rows=["concat"], seeds=[0], train_jobs=train_jobs)
    assert study.study_dir == tmp_path / "runs" / "exp-study"
    assert (study.study_dir / "table.md").is_file() and (study.study_dir / "concat-seed0").is_dir()
    assert study.table["concat"]["runs"] == [str(tmp_path / "runs" / "exp-study" / "concat-seed0")]
    assert not Path(cfg.run.dir).exists()  # where `train` with this config runs


def test_a_folder_holding_a_run_is_refused_as_a_study(tmp_path):
    from mmlnb_dist.studies import run_study

    cfg = _config(tmp_path)
    held = tmp_path / "runs" / "exp-study"
    held.mkdir(parents=True)
    (held / "config.yaml").write_text("run: {name: exp-study}\n")  # `train run.name=exp-study` ran here
    with pytest.raises(UserError, match=r"exp-study.*holds a run \(its config\.yaml\).*run\.name"):
        run_study(cfg, rows=["concat"], seeds=[0], train_jobs=train_jobs)
    assert sorted(p.name for p in held.iterdir()) == ["config.yaml"]


def test_ablate_prints_the_study_folder_and_logs_there(tmp_path, monkeypatch, capsys):
    from mmlnb_dist import studies
    from mmlnb_dist.cli import main

    monkeypatch.setattr(studies, "train_in_process", train_jobs)
    code = main(["ablate", "--config", "clip-multilabel", f"data.shards={tmp_path / 'no-shards'}",
                 f"run.output_dir={tmp_path / 'runs'}", "run.name=exp", "tracking.backends=[stdout]",
                 "--rows", "concat"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"study: {tmp_path / 'runs' / 'exp-study'}" in out.out + out.err
    assert (tmp_path / "runs" / "exp-study" / "study.log").is_file()
    assert not (tmp_path / "runs" / "exp").exists()


def test_a_study_left_in_the_train_runs_folder_is_named(tmp_path, caplog):
    """A study an earlier version wrote into `<run.name>/` is not found by a rerun (its runs train again in
    `<run.name>-study/`): the rerun says where the earlier one lies."""
    from mmlnb_dist.studies import run_study

    cfg = _config(tmp_path)
    earlier = tmp_path / "runs" / "exp"
    earlier.mkdir(parents=True)
    (earlier / "table.json").write_text("{}")
    with caplog.at_level("WARNING", logger="mmlnb_dist.studies"):
        run_study(cfg, rows=["concat"], seeds=[0], train_jobs=train_jobs)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"{earlier}" in said and "exp-study" in said and "table.json" in said, said

"""What a study's runs are and what it records about them, found unguarded by a mutation audit of
`studies/__init__.py` (the slow tests train real rows; these replace the training with stand-ins):
- `row_config`: each row x seed gets its seed, its own run folder, the study's cache, starts as a stage (not a
  resumed run) and is never registered, whatever the study's config says;
- `train_row`: a row's stage info keeps its val and test numbers only, what it trained and its feature-cache
  counts; a diverged run is recorded as done, and a rerun with the same settings skips it;
- `run_study`: the runs a stand-in reports up to date are the study's `skipped`; the MLflow parent run gets each
  row's finite means and spreads (a one-seed spread is undefined, not logged);
- `_open_parent`: a rerun with the same rows and seeds resumes the parent run, other rows or seeds start a new
  one, and a damaged `study.json` is a clear error;
- `format_cache` and `format_table`: the cache line names the description sets only when there are some, and the
  markdown table's separator has one cell per column."""
from __future__ import annotations

import json

import pytest

from support.clip import clip_config

from mmlnb_dist.recipes.clip.variants import METRICS


@pytest.fixture(autouse=True)
def no_process_group(monkeypatch):
    """The stand-ins build no engine: skip the study's DeepSpeed process group (slow to set up on CPU)."""
    import mmlnb_dist.studies as studies

    monkeypatch.setattr(studies, "init_engine_process_group", lambda env, cfg: None)
    monkeypatch.setattr(studies, "require_shards", lambda path: None)  # the stand-ins open no shard set


def _config(tmp_path, name, *extra):
    return clip_config(tmp_path / "no-shards", tmp_path / "runs", *extra, name=name)


def test_a_rows_run_has_its_seed_folder_and_the_study_cache_and_is_never_registered_or_resumed(tmp_path):
    from mmlnb_dist.studies import row_config

    cfg = _config(tmp_path, "rc", "run.resume=true", "run.seed=9", "tracking.register_name=clip-model")
    study_dir = tmp_path / "runs" / "rc"
    run = row_config(cfg, "sum", ["clip.model.fusion=sum"], 5, study_dir)
    assert run.clip.model.fusion == "sum" and run.run.seed == 5
    assert run.run.name == "sum-seed5" and run.run.dir == study_dir / "sum-seed5"
    assert run.run.cache_dir == study_dir / "cache"  # runs that share a setting share its frozen features
    assert run.run.resume is False  # the stage decides whether to resume, not the study's run.resume
    assert run.tracking.register_name is None  # an ablated model never takes the profile's registered name
    assert cfg.tracking.register_name == "clip-model" and cfg.run.seed == 9  # the study's own config is kept


def _row_job(tmp_path, monkeypatch, outcome):
    """A RowJob whose recipe run is `outcome(cfg)` (a result dict, or it raises)."""
    import mmlnb_dist.core.recipe as core_recipe
    from mmlnb_dist.studies import RowJob, job_fingerprint, row_config

    calls = []

    def fake_run(klass, cfg, *args, **kwargs):
        calls.append(cfg.run.resume)
        cfg.run.dir.mkdir(parents=True, exist_ok=True)
        return outcome(cfg)

    monkeypatch.setattr(core_recipe, "run", fake_run)
    cfg = _config(tmp_path, "tr")
    run_cfg = row_config(cfg, "concat", [], 0, tmp_path / "runs" / "tr")
    return RowJob("concat", 0, run_cfg, job_fingerprint(run_cfg)), calls


def test_a_trained_row_keeps_its_val_and_test_numbers_and_a_rerun_skips_it(tmp_path, monkeypatch):
    from mmlnb_dist.studies import train_row

    result = {"val/micro_f1": 0.5, "test/micro_f1": 0.25, "train/loss": 1.5, "val/note": "text", "epochs": 3,
              "trained": {"fusion": "concat"}, "cache/hits": 3, "cache/misses": 1}
    job, calls = _row_job(tmp_path, monkeypatch, lambda cfg: dict(result))
    info = train_row(job)
    assert info["metrics"] == {"val/micro_f1": 0.5, "test/micro_f1": 0.25}
    assert info["trained"] == {"fusion": "concat"} and info["diverged"] is None
    assert info["feature_cache"] == {"hits": 3, "misses": 1}
    assert info["skipped"] is False and calls == [False]
    again = train_row(job)
    assert again["skipped"] is True and len(calls) == 1  # done with the same settings: not trained again
    assert again["metrics"] == info["metrics"]


def test_a_row_that_diverges_is_recorded_as_done_with_why(tmp_path, monkeypatch):
    from mmlnb_dist.core.divergence import TrainingDiverged
    from mmlnb_dist.studies import train_row

    def diverge(cfg):
        raise TrainingDiverged("training diverged at step 3")

    job, calls = _row_job(tmp_path, monkeypatch, diverge)
    info = train_row(job)
    assert info["diverged"] == "training diverged at step 3" and info["metrics"] == {}
    assert info["feature_cache"] == {"hits": 0, "misses": 0}
    assert train_row(job)["skipped"] is True and len(calls) == 1  # the same settings would diverge again


def _stand_in(up_to_date=()):
    def train_jobs(cfg, jobs):
        infos = {}
        for name, job in jobs.items():
            job.cfg.run.dir.mkdir(parents=True)
            metrics = {f"test/{m}": 0.5 + job.seed / 10 for m in METRICS}
            infos[name] = {"metrics": metrics, "trained": None, "skipped": name in up_to_date,
                           "feature_cache": {"hits": 2, "misses": 1}}
        return infos

    return train_jobs


def test_the_runs_found_up_to_date_are_the_studys_skipped_and_count_as_reused(tmp_path):
    from mmlnb_dist.studies import run_study

    study = run_study(_config(tmp_path, "sk"), rows=["concat", "sum"], seeds=[0, 1],
                      train_jobs=_stand_in(up_to_date={"sum-seed1", "concat-seed0"}))
    assert sorted(study.skipped) == ["concat-seed0", "sum-seed1"]
    assert (study.cache["runs_trained"], study.cache["runs_up_to_date"]) == (2, 2)
    assert (study.cache["feature_hits"], study.cache["feature_misses"]) == (4, 2)  # trained runs only
    assert "runs: 2 trained, 2 up to date" in study.markdown


class FakeParent:
    opened, made = [], []

    def __init__(self, run_id):
        self.run_id, self.uri, self.finished = run_id, "sqlite:///fake.db", []
        FakeParent.made.append(self)

    @classmethod
    def open(cls, tracking, uri, output_dir, name, *, tags=None, params=None, artifacts=(), resume_id=None):
        cls.opened.append({"name": name, "params": params, "resume_id": resume_id})
        return cls(resume_id or f"run-{len(cls.opened)}")

    def finish(self, **kwargs):
        self.finished.append(kwargs)


@pytest.fixture
def fake_parent(monkeypatch):
    from mmlnb_dist.core.tracking import runs

    FakeParent.opened, FakeParent.made = [], []
    monkeypatch.setattr(runs, "ParentRun", FakeParent)
    return FakeParent


def test_the_parent_run_is_resumed_only_for_the_same_rows_and_seeds(tmp_path, fake_parent):
    from mmlnb_dist.studies import _open_parent

    cfg = _config(tmp_path, "p", "tracking.backends=[mlflow]")
    study_dir = tmp_path / "runs" / "p"
    first = _open_parent(cfg, study_dir, ["concat", "sum"], [0, 1])
    assert first.run_id == "run-1" and fake_parent.opened[0]["resume_id"] is None
    assert fake_parent.opened[0]["name"] == "p-study"
    assert fake_parent.opened[0]["params"] == {"rows": "concat,sum", "seeds": "0,1"}
    assert json.loads((study_dir / "study.json").read_text())["parent_run_id"] == "run-1"
    assert _open_parent(cfg, study_dir, ["concat", "sum"], [0, 1]).run_id == "run-1"  # a rerun: the same run
    assert fake_parent.opened[1]["resume_id"] == "run-1"
    other = _open_parent(cfg, study_dir, ["concat", "sum"], [0, 1, 2])  # another table: another run
    assert fake_parent.opened[2]["resume_id"] is None and other.run_id == "run-3"
    assert _open_parent(_config(tmp_path, "p"), study_dir, ["concat"], [0]) is None  # no MLflow tracking


def test_a_damaged_study_state_is_a_clear_error(tmp_path, fake_parent):
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.studies import _open_parent

    study_dir = tmp_path / "runs" / "p"
    study_dir.mkdir(parents=True)
    (study_dir / "study.json").write_text("{not json")
    with pytest.raises(UserError, match="study.json is not valid JSON.*remove it"):
        _open_parent(_config(tmp_path, "p", "tracking.backends=[mlflow]"), study_dir, ["concat"], [0])


def test_the_parent_run_gets_each_rows_finite_means_and_spreads(tmp_path, fake_parent):
    from mmlnb_dist.studies import run_study

    study = run_study(_config(tmp_path, "pm", "tracking.backends=[mlflow]"), rows=["concat", "sum"], seeds=[0],
                      train_jobs=_stand_in())
    assert study.parent_run_id == "run-1"
    (parent,) = fake_parent.made
    (finished,) = parent.finished
    assert finished.get("status", "FINISHED") == "FINISHED"
    # one seed: each spread is undefined (None), so only the means are logged
    rows = {key for key in finished["metrics"] if not key.startswith("cache/")}
    assert rows == {f"{row}/{m}_mean" for row in ("concat", "sum") for m in METRICS}
    assert finished["metrics"]["sum/micro_f1_mean"] == pytest.approx(0.5)
    assert finished["metrics"]["cache/runs_trained"] == 2.0
    assert {p.name for p in finished["artifacts"]} == {"table.md", "table.json", "table.png"}


def test_the_cache_line_names_description_sets_only_when_there_are_some():
    from mmlnb_dist.studies import format_cache

    cache = {"runs_trained": 3, "runs_up_to_date": 1, "feature_hits": 4, "feature_misses": 2,
             "description_misses": 1, "description_hits": 2, "description_sets": {}}
    assert format_cache(cache) == "runs: 3 trained, 1 up to date; frozen features: 4 cache hits, 2 computed"
    cache["description_sets"] = {"fine_tuned_vlm": {}, "base_vlm": {}}
    assert format_cache(cache).endswith("; descriptions: 1 set(s) generated, reused by 2 run(s) "
                                        "(fine_tuned_vlm, base_vlm)")


def test_the_markdown_separator_has_one_cell_per_column():
    from mmlnb_dist.studies import format_table, summarise

    rows = {"full": ("the model", ()), "concat": ("concatenation", ())}
    results = {(r, s): {"test/a": 0.5 + s / 10, "test/b": 0.25, "run_dir": "x"} for r in rows for s in (0, 1)}
    table = format_table(summarise(results, rows, list(rows), [0, 1], ["a", "b"], "test"), ["a", "b"], "test",
                         "s", [0, 1])
    lines = table.splitlines()
    head, separator = lines[2], lines[3]
    assert head == "| row | a | b | what it changes |"
    assert separator.count("---") == head.count("|") - 1 == 4


def test_a_rows_fingerprint_follows_its_result_settings_only(tmp_path):
    """A rerun skips a run whose results cannot differ: a new MLflow experiment or a longer rank wait keeps the
    fingerprint, another learning rate or seed changes it."""
    from mmlnb_dist.studies import job_fingerprint, row_config

    def fp(*extra, seed=0):
        return job_fingerprint(row_config(_config(tmp_path, "fp", *extra), "concat", [], seed, tmp_path / "s"))

    base = fp()
    assert fp("tracking.experiment=elsewhere") == base
    assert fp("distributed.rank0_wait_s=999") == base
    assert fp("train.lr=0.123") != base
    assert fp(seed=1) != base


def test_an_unknown_descriptions_source_is_refused_naming_the_choices(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.studies import description_sources

    from support.fusion import CPU_DEMO

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="--descriptions: 'shard' is not one of vlm, shards"):
        description_sources(cfg, ["full"], "shard")
    assert description_sources(cfg, ["full"], "vlm") == {"full": "fine_tuned_vlm"}


def test_a_description_stage_logs_under_the_study_and_leaves_the_studys_config_alone(tmp_path):
    """`studies.descriptions._stage_config`: the describe run is a child of the study's parent run in its store,
    in the study's cache, named by its source, started as a stage; without a parent it keeps the config's store."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.studies.descriptions import _stage_config

    from support.fusion import CPU_DEMO

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}", "run.resume=true", "tracking.uri=sqlite:///own.db"])
    study = tmp_path / "study"
    stage = _stage_config(cfg, study, "base_vlm", "parent-1", "sqlite:///study.db")
    assert (stage.tracking.parent_run_id, stage.tracking.uri) == ("parent-1", "sqlite:///study.db")
    assert (stage.run.output_dir, stage.run.name, stage.run.resume) == (study / "cache" / "runs", "base_vlm", False)
    assert (cfg.run.output_dir, cfg.run.resume, cfg.tracking.uri) == (tmp_path, True, "sqlite:///own.db")
    alone = _stage_config(cfg, study, "fine_tuned_vlm", None, None)
    assert (alone.tracking.parent_run_id, alone.tracking.uri) == (None, "sqlite:///own.db")


def test_seeds_given_in_another_order_are_the_same_study(tmp_path, fake_parent, monkeypatch):
    """`ablate --seeds 1,0` after `--seeds 0,1` is the same table (the same runs): it started a new MLflow parent
    run, the first one left with the same rows' metrics."""
    import mmlnb_dist.studies as studies

    opened = []
    monkeypatch.setattr(studies, "_open_parent", lambda cfg, study_dir, rows, seeds: opened.append(list(seeds)))

    def stop(*args, **kwargs):
        raise RuntimeError("stop")  # after the parent run is opened: no runs here

    monkeypatch.setattr(studies, "_run_rows", stop)
    with pytest.raises(RuntimeError, match="stop"):
        studies.run_study(_config(tmp_path, "p", "tracking.backends=[mlflow]"), ["concat", "sum"], [1, 0])
    assert opened == [[0, 1]]

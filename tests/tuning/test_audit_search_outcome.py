"""Mutation audit of what a search reads back and leaves (`tuning.results`, `tuning.outcome`) and of the algorithms it
hands Tune (`tuning.algorithms`): the trials table's rows, the best pick, the cache counts, the parent run's summary,
the best trial's registration, the random searcher's seed and ASHA's horizon. Stand-in results and a stand-in parent
run; no Ray instance, no MLflow store."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

from mmlnb_dist.config import load_config

METRIC = "val/balanced_accuracy"


def _cfg(*extra):
    return load_config("cpu-demo", ["tune.name=audit", "tracking.backends=[stdout]", *extra])


def _result(tid, value, error=None, **metrics):
    return SimpleNamespace(config={"train.lr": 1e-3}, error=error,
                           metrics={METRIC: value, "trial_id": tid, "training_iteration": 2, **metrics})


def _rows(tmp_path, results, grid_trials=None, files=None):
    """`trial_rows` of `results` (with Tune's records `grid_trials` when given); `files`: trial id -> its
    trial_result.json."""
    from mmlnb_dist.tuning.results import trial_rows

    trials = tmp_path / "trials"
    for tid, content in (files or {}).items():
        (trials / f"audit-{tid}").mkdir(parents=True)
        (trials / f"audit-{tid}" / "trial_result.json").write_text(json.dumps(content))

    class Grid(list):
        pass

    grid = Grid(results)
    if grid_trials is not None:
        grid._experiment_analysis = SimpleNamespace(trials=grid_trials)
    return {r["trial_id"]: r for r in trial_rows(grid, {"trials": trials}, _cfg())}


def test_an_errored_trial_stays_errored_even_if_an_earlier_attempt_diverged(tmp_path):
    """DIVERGED is a result of a trial that ended; a trial that then errored (its retry raised) is an error, and keeps
    its error line."""
    rows = _rows(tmp_path, [_result("a", 0.5, error=RuntimeError("boom"))], files={"a": {"diverged": "nan loss"}})
    assert rows["a"]["status"] == "ERROR" and rows["a"]["error"] == "RuntimeError: boom"
    assert rows["a"]["completed"] is False


def test_the_result_files_cache_counts_win_over_the_last_report(tmp_path):
    """A finished trial's result file holds its final cache counts; its last report's (earlier) ones are only used
    for a trial stopped before writing one."""
    rows = _rows(tmp_path, [_result("a", 0.5, **{"cache/hits": 1.0}), _result("b", 0.4, **{"cache/hits": 2.0})],
                 files={"a": {METRIC: 0.5, "cache/hits": 3}})
    assert rows["a"]["cache/hits"] == 3 and rows["b"]["cache/hits"] == 2.0


def test_tunes_records_are_used_only_when_they_match_the_results_one_to_one(tmp_path):
    """Records of another length (Ray's internals changed) cannot be paired with the results: each result's own
    metrics and error tell its id and status instead of a record of another trial."""
    records = [SimpleNamespace(trial_id="zzz", status="ERROR", run_metadata=SimpleNamespace(start_time=1.0))]
    rows = _rows(tmp_path, [_result("a", 0.5), _result("b", 0.4)], grid_trials=records)
    assert {t: r["status"] for t, r in rows.items()} == {"a": "OK", "b": "OK"}


def test_an_error_line_is_at_most_300_characters():
    from mmlnb_dist.tuning.results import error_line

    line = error_line(RuntimeError("x" * 1000))
    assert len(line) == 300 and line.startswith("RuntimeError: xxx")
    assert len(error_line(RuntimeError("ray::ImplicitFunc.train()\n" + "y" * 1000))) == 300


def test_the_cache_stats_count_files_only_and_sum_the_trials_counts_as_integers(tmp_path):
    from mmlnb_dist.tuning.results import cache_stats

    (tmp_path / "c" / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "c" / "a.npy").write_bytes(b"1")
    (tmp_path / "c" / "sub" / "b.npy").write_bytes(b"2")
    stats = cache_stats(tmp_path / "c", [{"cache/hits": 2.0, "cache/misses": 1}, {"cache/hits": 3.0},
                                         {"cache/hits": None}])
    assert stats["cache_files"] == 2 and stats["files"] == ["a.npy", str(Path("sub") / "b.npy")]
    assert stats["cache/hits"] == 5 and type(stats["cache/hits"]) is int and stats["cache/misses"] == 1
    assert "cache_hits" not in stats
    assert cache_stats(tmp_path / "missing", []) == {"cache_files": 0, "files": []}


def test_only_a_trial_that_finished_ok_can_be_best():
    """A diverged trial whose kept value is finite (`best/val_loss` of a VLM run that kept its best adapter) and the
    trials of a stopped search (RUNNING, PENDING) are no answer of the search."""
    from mmlnb_dist.tuning.results import pick_best

    rows = [{"trial_id": t, "status": s, METRIC: v} for t, s, v in
            (("d", "DIVERGED", 0.99), ("r", "RUNNING", 0.98), ("p", "PAUSED", 0.97), ("ok", "OK", 0.5))]
    assert pick_best(rows, METRIC, "max")["trial_id"] == "ok"
    assert pick_best(rows, METRIC, "min")["trial_id"] == "ok"


class _Parent:
    """What `outcome` uses of a `ParentRun`."""

    uri = "http://127.0.0.1:9"  # no store: nothing may be written
    run_id = "parent-1"

    def __init__(self):
        self.finished = None

    def finish(self, **kwargs):
        self.finished = kwargs

    def child_with_tag(self, key, value):
        self.tagged = (key, value)
        return "child-7"


def _summary(tmp_path, **extra):
    exp = tmp_path / "exp"
    exp.mkdir(exist_ok=True)
    return {"wall_s": 1.5, "trials": 4, "errored": 1, "diverged": 0, "stopped_early": 2,
            "cache": {"cache_files": 3}, "figure": str(exp / "search.png"), **extra}, {"exp": exp}


def test_the_parent_runs_summary_is_logged_at_the_step_of_the_trial_count(tmp_path):
    from mmlnb_dist.tuning.outcome import log_parent

    parent = _Parent()
    summary, dirs = _summary(tmp_path, best_metric=0.8, best_trial_id="t2", best_params={"train.lr": 0.01},
                             best_config=str(tmp_path / "best.yaml"))
    log_parent(_cfg(), parent, summary, dirs, [{"trial_id": "t3"}, {"trial_id": "t4"}])
    got = parent.finished
    assert got["step"] == 4 and got["status"] == "FINISHED"
    assert got["metrics"] == {"tune/wall_s": 1.5, "tune/trials": 4, "tune/errored": 1, "tune/diverged": 0,
                              "tune/stopped_early": 2, "tune/cache_files": 3, f"best/{METRIC}": 0.8}
    assert got["tags"] == {"best_trial_id": "t2", "best.train.lr": "0.01", "errored_trials": "t3, t4"}
    assert got["artifacts"] == [dirs["exp"] / "trials.csv", dirs["exp"] / "search.png", tmp_path / "best.yaml"]


def test_a_search_without_a_best_logs_no_best_metric_and_no_best_config(tmp_path):
    from mmlnb_dist.tuning.outcome import log_parent

    parent = _Parent()
    summary, dirs = _summary(tmp_path, best_metric=None)
    log_parent(_cfg(), parent, summary, dirs, [], status="KILLED")
    assert not any(k.startswith("best") for k in parent.finished["metrics"])
    assert parent.finished["tags"] == {"errored_trials": None} and parent.finished["status"] == "KILLED"
    assert len(parent.finished["artifacts"]) == 2


def _register(monkeypatch, tmp_path, *extra):
    """`register_best` with the registry replaced: what the recipe's register function was called with."""
    from mmlnb_dist import recipes
    from mmlnb_dist.core.tracking import registry
    from mmlnb_dist.tuning.outcome import register_best

    calls = {}

    def register(run, name, **kwargs):
        calls.update(run=run, name=name, **kwargs)
        return "registered"

    monkeypatch.setattr(recipes, "load_class", lambda target, key="": calls.setdefault("target", target) and register)
    monkeypatch.setattr(registry, "register_or_explain",
                        lambda run_id, online, name, run_dir, fn: {"run_id": run_id, "online": online,
                                                                   "result": fn(run_id), "dir": run_dir})
    cfg = _cfg("tracking.register_name=nb", *extra)
    out = register_best(cfg, _Parent(), {"best_run_dir": str(tmp_path / "t2")})
    return out, calls


def test_the_best_trial_registers_on_the_search_metric_and_mode(monkeypatch, tmp_path):
    out, calls = _register(monkeypatch, tmp_path, "tune.metric=val/loss")
    assert out == {"run_id": "child-7", "online": True, "result": "registered", "dir": (tmp_path / "t2").resolve()}
    assert calls["target"] == "mmlnb_dist.recipes.fusion.pyfunc_model:register_run"
    assert (calls["run"], calls["name"], calls["metric"], calls["mode"], calls["tracking_uri"]) == \
        ("child-7", "nb", "val/loss", "min", _Parent.uri)


def test_a_register_metric_of_its_own_takes_its_own_mode(monkeypatch, tmp_path):
    _, calls = _register(monkeypatch, tmp_path, "tracking.register_metric=best/val/loss")
    assert (calls["metric"], calls["mode"]) == ("best/val/loss", "min")  # the search's metric is maximised
    _, calls = _register(monkeypatch, tmp_path, "tracking.register_metric=best/val/loss",
                         "tracking.register_mode=max")
    assert (calls["metric"], calls["mode"]) == ("best/val/loss", "max")


def test_the_best_trial_registers_through_the_recipe_the_trials_ran(monkeypatch, tmp_path, caplog):
    """`tune.recipe` names what the trials train, whatever `train.recipe` says (cpu-demo's: fusion): a CLIP search's
    best trial registers as a CLIP model, a VLM search's registers nothing. Both went by `train.recipe`: the CLIP
    model was registered through the fusion recipe's register function, and so was the VLM trial's folder."""
    _, calls = _register(monkeypatch, tmp_path, "tune.recipe=clip", "tune.metric=val/micro_f1")
    assert calls["target"] == "mmlnb_dist.recipes.clip.pyfunc_model:register_run" and calls["mode"] == "max"
    _, calls = _register(monkeypatch, tmp_path, "tune.recipe=vlm-fusion")  # a pipeline: its training recipe's
    assert calls["target"] == "mmlnb_dist.recipes.fusion.pyfunc_model:register_run"
    with caplog.at_level(logging.WARNING):
        out, calls = _register(monkeypatch, tmp_path, "tune.recipe=vlm", "tune.metric=val/loss")
    assert out is None and calls == {} and "the vlm recipe registers no model" in caplog.text
    with caplog.at_level(logging.WARNING):
        out, calls = _register(monkeypatch, tmp_path, "tune.recipe=mmlnb_dist.tuning.smoke:run")
    assert out is None and calls == {} and "mmlnb_dist.tuning.smoke:run recipe registers no model" in caplog.text


def test_a_search_registers_its_best_only_when_asked(monkeypatch, tmp_path):
    from mmlnb_dist.tuning import outcome

    monkeypatch.setattr(outcome, "save_search_figure", lambda *a, **kw: tmp_path / "search.png")
    monkeypatch.setattr(outcome, "register_best", lambda cfg, parent, summary: "done")
    dirs = {"exp": tmp_path, "best": tmp_path / "best.yaml", "cache": tmp_path / "cache"}
    rows = [{"trial_id": "a", "status": "OK", "completed": True, METRIC: 0.5, "train.lr": 1e-3,
             "run_dir": str(tmp_path / "a")}]
    for extra, registered in (((), None), (("tune.register_best=true",), "done"),
                              (("tune.register_best=true", "tracking.register_name=null"), None)):
        cfg = _cfg("tracking.register_name=nb", *extra)
        summary = outcome.finish(cfg, rows, dirs, None, None, {"train.lr": {}}, 1.0, {})
        assert summary.get("registered") == registered, extra
    summary = outcome.finish(_cfg("tune.register_best=true", "tracking.register_name=nb"), rows, dirs, None, None,
                             {"train.lr": {}}, 1.0, {}, interrupted=True)
    assert "registered" not in summary and "best_run_dir" not in summary  # a partial search registers nothing


def test_the_random_and_grid_searchers_hold_the_seed():
    """Left to Tune's default the random searcher drew from the unseeded global generator: two searches with one
    seed sampled different values."""
    from mmlnb_dist.tuning.algorithms import searcher

    def draws(kind, seed):  # what the searcher samples the space's values from (Ray keeps it private)
        return list(searcher(_cfg(f"tune.searcher={kind}", f"tune.seed={seed}"))._random_state.uniform(size=3))

    for kind in ("random", "grid"):
        assert draws(kind, 11) == draws(kind, 11) != draws(kind, 12)


def test_asha_runs_to_tune_max_t_or_one_report_per_epoch():
    from mmlnb_dist.tuning.algorithms import asha_horizon, scheduler

    assert asha_horizon(_cfg("train.epochs=7")) == 7
    assert asha_horizon(_cfg("train.epochs=7", "tune.max_t=3")) == 3
    assert asha_horizon(_cfg("train.epochs=7", "tune.recipe=mmlnb_dist.tuning.smoke:run")) == 7
    assert scheduler(_cfg("train.epochs=7", "tune.max_t=3", "tune.grace_period=1"))._max_t == 3
    assert math.isfinite(scheduler(_cfg("train.epochs=7"))._max_t)

"""`best.yaml` trains what the search's trials trained. A `tune.recipe=clip` (or `vlm`) search of a profile whose
`train.recipe` is `fusion` (cpu-demo) wrote the base config's `train.recipe: fusion` into `best.yaml`, so the command
`tune` prints after it, `mmlnb-dist train --config best.yaml`, trained the fusion classifier with the best trial's
values applied to keys it never reads. `best.yaml` now names the searched recipe (and, where the base config's
`train.best_metric` is not one of that recipe's metrics, the search's metric), and `tune` prints a command that runs
it: `pipeline` for the `vlm-fusion` pipeline, none for a recipe class outside the table."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmlnb_dist.config import load_config


def _finish(tmp_path, monkeypatch, metric, *extra):
    from mmlnb_dist.tuning import outcome

    monkeypatch.setattr(outcome, "save_search_figure", lambda *a, **kw: tmp_path / "search.png")
    cfg = load_config("cpu-demo", ["tune.name=best-recipe", "tracking.backends=[stdout]", f"tune.metric={metric}",
                                   *extra])
    dirs = {"exp": tmp_path, "best": tmp_path / "best.yaml", "cache": tmp_path / "cache"}
    rows = [{"trial_id": "a", "status": "OK", "completed": True, metric: 0.5, "train.lr": 2e-3,
             "run_dir": str(tmp_path / "a")}]
    summary = outcome.finish(cfg, rows, dirs, None, None, {"train.lr": {"loguniform": [1e-4, 1e-2]}}, 1.0, {})
    return cfg, summary, load_config(summary["best_config"])


@pytest.mark.parametrize("recipe, metric, best_metric", [("clip", "val/micro_f1", "micro_f1"),
                                                         ("vlm", "val/loss", "loss"),
                                                         ("fusion", "val/auroc", "balanced_accuracy")])
def test_best_yaml_trains_the_searched_recipe(tmp_path, monkeypatch, recipe, metric, best_metric):
    _, summary, best = _finish(tmp_path, monkeypatch, metric, f"tune.recipe={recipe}")
    assert best.train.recipe == recipe and best.train.lr == 2e-3
    assert best.train.best_metric == best_metric  # the base config's, where the recipe has it


def test_the_printed_command_runs_the_searched_recipe(tmp_path, monkeypatch, capsys):
    from mmlnb_dist.commands import tune as command

    for recipe, metric, expected in (("clip", "val/micro_f1", "mmlnb-dist train --config "),
                                     ("vlm-fusion", "val/balanced_accuracy", "mmlnb-dist pipeline --config "),
                                     ("mmlnb_dist.tuning.smoke:run", "val/balanced_accuracy", None)):
        cfg, summary, _ = _finish(tmp_path, monkeypatch, metric, f"tune.recipe={recipe}")
        monkeypatch.setattr(command, "load_from_args", lambda args: cfg)
        monkeypatch.setattr("mmlnb_dist.tuning.driver.run_search", lambda cfg, space: summary)
        assert command._tune(SimpleNamespace(ray_address=None, overrides=[], space=None)) == 0
        out = capsys.readouterr().out
        assert f"best config: {summary['best_config']}" in out, out
        if expected:
            assert f"{expected}{summary['best_config']}" in out, out
        else:
            assert "mmlnb-dist train" not in out, out  # `train` cannot run a recipe class outside the table


def test_best_yaml_trains_in_a_folder_of_its_own(tmp_path, monkeypatch):
    """`best.yaml` kept the base config's `run.name`, so the printed `train --config best.yaml` trained into the
    profile's own run folder (`runs/cpu-demo`): after a `train` of the profile it was refused ("already holds
    checkpoints; pass run.resume=true"), and following that advice resumed the old run under the new values. It is
    named after the search now."""
    cfg, _, best = _finish(tmp_path, monkeypatch, "val/balanced_accuracy")
    assert best.run.name == "best-recipe-best" and best.run.dir != cfg.run.dir
    assert best.run.output_dir == cfg.run.output_dir


def test_a_base_setting_the_searched_recipe_refuses_keeps_the_base_recipe(tmp_path, monkeypatch, caplog):
    """A base config that only its own `train.recipe` takes (`tracking.register_metric=val/balanced_accuracy`, a fusion
    metric, in a CLIP search): the search still ends with its best.yaml, as the base config names it, and says why."""
    import logging

    with caplog.at_level(logging.WARNING, logger="mmlnb_dist"):
        _, summary, best = _finish(tmp_path, monkeypatch, "val/micro_f1", "tune.recipe=clip",
                                   "tracking.register_metric=val/balanced_accuracy")
    assert best.train.recipe == "fusion" and best.train.lr == 2e-3 and summary["best_trial_id"] == "a"
    assert "best.yaml keeps train.recipe=fusion" in caplog.text, caplog.text


def test_no_train_command_is_printed_for_a_best_yaml_of_another_recipe(tmp_path, monkeypatch, capsys):
    """The fallback above: `train --config best.yaml` would train the base recipe, not the searched one."""
    from mmlnb_dist.commands import tune as command

    cfg, summary, _ = _finish(tmp_path, monkeypatch, "val/micro_f1", "tune.recipe=clip",
                              "tracking.register_metric=val/balanced_accuracy")
    monkeypatch.setattr(command, "load_from_args", lambda args: cfg)
    monkeypatch.setattr("mmlnb_dist.tuning.driver.run_search", lambda cfg, space: summary)
    assert command._tune(SimpleNamespace(ray_address=None, overrides=[], space=None)) == 0
    out = capsys.readouterr().out
    assert f"best config: {summary['best_config']}" in out and "mmlnb-dist train" not in out, out

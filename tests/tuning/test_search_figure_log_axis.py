"""search.png drew a log-uniform parameter (train.lr over [1e-4, 1e-2]) on a linear axis: every trial below 1e-3 sat
on the left edge. A loguniform key's panel has a log axis; uniform, quniform and choice keys keep a linear one."""
from __future__ import annotations

from mmlnb_dist.config import load_config
from mmlnb_dist.tuning.figure import search_figure

METRIC = "val/balanced_accuracy"
ROWS = [{"trial_id": t, "status": "OK", "completed": True, METRIC: m, "train.lr": lr, "train.weight_decay": wd,
         "fusion.curriculum.schedule": s, "run_dir": f"/r/{t}"}
        for t, m, lr, wd, s in (("a", 0.6, 1e-4, 0.01, "step"), ("b", 0.7, 3e-3, 0.02, "linear"),
                                ("c", 0.65, 2e-4, 0.03, "step"))]
SPACE = {"train.lr": {"loguniform": [1.0e-4, 1.0e-2]}, "train.weight_decay": {"uniform": [0.0, 0.1]},
         "fusion.curriculum.schedule": {"choice": ["step", "linear"]}}


def _scales(fig, keys):
    return {key: ax.get_xscale() for key, ax in zip(keys, fig.axes[1:])}


def test_a_loguniform_parameter_is_drawn_on_a_log_axis():
    fig = search_figure(ROWS, SPACE, METRIC, "max")
    assert _scales(fig, SPACE) == {"train.lr": "log", "train.weight_decay": "linear",
                                   "fusion.curriculum.schedule": "linear"}
    assert _scales(search_figure(ROWS, {"train.lr": {"qloguniform": [1.0e-4, 1.0e-2, 1.0e-4]}}, METRIC, "max"),
                   ["train.lr"]) == {"train.lr": "log"}


def test_the_search_draws_its_figure_with_the_space_s_distributions(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import outcome

    drawn = {}

    def capture(rows, params, metric, mode, path, name="", best=None):
        drawn["fig"] = search_figure(rows, params, metric, mode, name, best)
        return path

    monkeypatch.setattr(outcome, "save_search_figure", capture)
    cfg = load_config("cpu-demo", ["tune.name=logaxis", "tracking.backends=[stdout]"])
    dirs = {"exp": tmp_path, "best": tmp_path / "best.yaml", "cache": tmp_path / "cache"}
    outcome.finish(cfg, ROWS, dirs, None, None, SPACE, 1.0, {}, interrupted=True)
    assert _scales(drawn["fig"], SPACE)["train.lr"] == "log"

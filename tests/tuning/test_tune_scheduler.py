"""The search's ASHA scheduler follows `tune.grace_period` and `tune.reduction_factor`, as Ray's own ASHAScheduler
built with the same arguments does: no trial is stopped before the grace period, and a poor trial is stopped at the
first rung. Checked without a Ray cluster: the scheduler is fed the results of stand-in trials, as Tune's controller
would."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mmlnb_dist.config import load_config

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"
METRIC, MODE = "val/loss", "min"


def _feed(sched, reports):
    """Each `(trial_id, iteration, loss)` in `reports` as a result of that trial; the scheduler's actions in order.
    The first report of a trial adds it, as Tune's controller does before its first result."""
    trials = {}
    actions = []
    for trial_id, iteration, loss in reports:
        if trial_id not in trials:
            trials[trial_id] = SimpleNamespace(trial_id=trial_id)
            sched.on_trial_add(None, trials[trial_id])
        result = {"training_iteration": iteration, "epoch": iteration - 1, METRIC: loss}
        actions.append(sched.on_trial_result(None, trials[trial_id], result))
    return actions


def test_asha_waits_for_the_grace_period_then_stops_a_poor_trial_at_the_first_rung(tmp_path):
    """With tune.grace_period=2 a poor trial runs its first epoch and is stopped at its second, like Ray's own
    ASHAScheduler with grace_period=2. If the setting were ignored (grace 1), trials would be judged, and poor ones
    stopped, after one epoch: a user who set a grace period for slow starters would lose them anyway."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from mmlnb_dist.tuning.algorithms import scheduler

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path / 'runs'}", "tune.scheduler=asha", "tune.grace_period=2",
                                 "tune.reduction_factor=3", "train.epochs=6", f"tune.metric={METRIC}",
                                 f"tune.mode={MODE}"])
    sched = scheduler(cfg)

    def ray_asha(grace_period):
        return ASHAScheduler(time_attr="training_iteration", max_t=6, grace_period=grace_period, reduction_factor=3)

    reference, grace_1 = ray_asha(2), ray_asha(1)
    rungs = [[milestone for milestone, _ in b._rungs] for b in sched._brackets]
    assert rungs == [[milestone for milestone, _ in b._rungs] for b in reference._brackets] == [[6, 2]]
    assert rungs != [[milestone for milestone, _ in b._rungs] for b in grace_1._brackets]

    # Three good trials and a poor one report epoch 1, then epoch 2.
    reports = [(t, it, 0.9 if t == "poor" else 0.1) for it in (1, 2) for t in ("a", "b", "c", "poor")]
    expected = [TrialScheduler.CONTINUE] * 7 + [TrialScheduler.STOP]
    for s in (sched, reference, grace_1):
        s.set_search_properties(METRIC, MODE)
    assert _feed(sched, reports) == _feed(reference, reports) == expected
    # The reference tells the two apart: with grace 1 the poor trial is stopped at its first report.
    assert _feed(grace_1, reports[:4]) == [TrialScheduler.CONTINUE] * 3 + [TrialScheduler.STOP]

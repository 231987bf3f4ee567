"""The search's algorithms: the searcher that proposes each trial's values and the scheduler that stops trials
early (ASHA) or lets every one run to its end (FIFO)."""
from __future__ import annotations

from ..config import Config
from ..config.tune import search_mode


def searcher(cfg: Config):
    """The searcher, seeded with `tune.seed` and holding `tune.max_concurrent` (the Tuner then needs no
    `max_concurrent_trials`). Random and grid: Tune's BasicVariantGenerator (grid_search entries in the space),
    given the seed: left to Tune's default it drew from the unseeded global generator, so two searches with one
    seed sampled different values."""
    t = cfg.tune
    if t.searcher == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(metric=t.metric, mode=search_mode(cfg), seed=t.seed),
                                  max_concurrent=t.max_concurrent)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=t.max_concurrent, random_state=t.seed)


def scheduler(cfg: Config):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    t = cfg.tune
    if t.scheduler == "fifo":
        return FIFOScheduler()
    last_epoch = cfg.train.epochs - 1

    class LetLastEpochFinish(ASHAScheduler):
        """ASHA, except that a trial which reported its last epoch is never stopped: it is finishing anyway, and a
        stop then (ASHA stops every trial at max_t) killed it while it evaluated the test split, exported its model
        and wrote its result file, so a search lost the results of its complete trials."""

        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            if action == TrialScheduler.STOP and result.get("epoch", -1) >= last_epoch:
                return TrialScheduler.CONTINUE
            return action

    return LetLastEpochFinish(time_attr="training_iteration", max_t=t.max_t or cfg.train.epochs,
                              grace_period=t.grace_period, reduction_factor=t.reduction_factor)

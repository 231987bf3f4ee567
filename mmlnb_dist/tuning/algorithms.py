"""The search's algorithms: the searcher that proposes each trial's values and the scheduler that stops trials
early (ASHA) or lets every one run to its end (FIFO)."""
from __future__ import annotations

from typing import Optional

from ..config import Config
from ..core.recipe import FINAL_REPORT
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


def asha_horizon(cfg: Config) -> Optional[int]:
    """ASHA's max_t, the most reports a trial makes: `tune.max_t`, else one per epoch (`train.epochs`), or what the
    recipe table's `reports` counts for the base config (`tune.recipe=vlm`: one per validation, every
    `vlm.eval_every` steps and at the end; it took train.epochs, which a VLM trial never reads). None when the
    recipe cannot count them (its inputs unreadable: the recipe's own check names them)."""
    from ..recipes import RECIPES, load_class

    t = cfg.tune
    spec = RECIPES.get(t.recipe)
    if t.max_t or spec is None or not spec.reports:
        return t.max_t or cfg.train.epochs
    return load_class(spec.reports, "tune.recipe")(cfg)


def scheduler(cfg: Config, max_t: Optional[int] = None):
    """FIFO, or ASHA with `max_t` (default `asha_horizon(cfg)`: `tune` passes the one `check_search` found, which
    for a VLM search counts the train pairs, a full read of the train shards)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    t = cfg.tune
    if t.scheduler == "fifo":
        return FIFOScheduler()
    last_epoch = cfg.train.epochs - 1

    class LetLastReportFinish(ASHAScheduler):
        """ASHA, except that a trial which made its last report (its last epoch, or a report marked FINAL_REPORT)
        is never stopped: it is finishing anyway, and a stop then (ASHA stops every trial at max_t) killed it while
        it evaluated the test split, exported its model and wrote its result file, so a search lost the results of
        its complete trials."""

        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            last = result[FINAL_REPORT] >= 1 if FINAL_REPORT in result else result.get("epoch", -1) >= last_epoch
            return TrialScheduler.CONTINUE if action == TrialScheduler.STOP and last else action

    return LetLastReportFinish(time_attr="training_iteration", max_t=max_t or asha_horizon(cfg),
                               grace_period=t.grace_period, reduction_factor=t.reduction_factor)

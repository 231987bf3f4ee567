"""ASHA on `tune.recipe=vlm` searches: a VLM trial reports once per validation (every `vlm.eval_every` steps and at
the end), not once per `train.epochs` epoch, which a VLM trial never reads.

Before: ASHA's max_t was train.epochs, and its "never stop a trial at its last epoch" exception compared the step a
VLM trial reports with train.epochs - 1, so from that step on no VLM trial was ever stopped (ASHA did nothing), and
with train.epochs below the validation count every trial would be stopped at max_t before its end. Now max_t is the
base config's validation count, the VLM stage marks its last report (FINAL_REPORT), and a space that changes the
count asks for tune.max_t."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.core.recipe import FINAL_REPORT

from support.vlm import ROOT, make_pairs

PIX = 56 * 56


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("horizon") / "pairs", n=24)


def _cfg(pairs: Path, tmp: Path, *extra: str):
    return load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
        f"vlm.pairs={pairs}", f"run.output_dir={tmp / 'runs'}", f"vlm.cache_dir={tmp / 'cache'}",
        "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", "tracking.backends=[stdout]",
        "vlm.global_batch_size=4", "vlm.val_max_samples=4", "tune.recipe=vlm", "tune.metric=val/loss",
        "train.epochs=2", *extra])


def test_the_counted_reports_are_the_reports_a_fine_tuning_run_makes(pairs, tmp_path):
    """The reference is the run itself: a 7-step fine-tune validating every 3 steps reports at steps 3, 6 and 7,
    and only the last report is marked final."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm.batches import count_pairs, validation_reports
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    cfg = _cfg(pairs, tmp_path, "vlm.max_steps=7", "vlm.eval_every=3", "vlm.checkpoint_every=null")
    reports = []
    run(FinetuneVLMRecipe, cfg, report=lambda step, metrics: reports.append((step, dict(metrics))))
    assert [step for step, _ in reports] == [3, 6, 7]
    assert [m[FINAL_REPORT] for _, m in reports] == [0.0, 0.0, 1.0]
    assert validation_reports(cfg.vlm, count_pairs(ShardSet.open(pairs), "train")) == len(reports)


@pytest.mark.parametrize("max_steps, epochs, eval_every", [
    (None, 2, 2), (None, 3, None), (9, 1, 3), (10, 1, 3), (1, 1, 1), (None, 1, 100)])
def test_the_count_matches_the_stages_report_rule(max_steps, epochs, eval_every):
    """The stage reports after step s when s is a multiple of eval_every below the last step, and at the last step
    (finetune.py's loop); counted here step by step."""
    from mmlnb_dist.recipes.vlm.batches import validation_reports
    from mmlnb_dist.recipes.vlm.config import VLMConfig

    vcfg = VLMConfig(max_steps=max_steps, epochs=epochs, eval_every=eval_every, global_batch_size=4)
    n_train = 18  # 4 steps an epoch
    total = max_steps or epochs * (n_train // 4)
    steps = [s for s in range(1, total + 1) if (eval_every and s % eval_every == 0 and s < total) or s == total]
    assert validation_reports(vcfg, n_train) == len(steps)


def test_asha_lets_a_vlm_trial_make_every_validation_report(pairs, tmp_path):
    from mmlnb_dist.tuning.algorithms import scheduler

    cfg = _cfg(pairs, tmp_path, "vlm.max_steps=12", "vlm.eval_every=2")  # reports at 2, 4, ..., 12
    assert scheduler(cfg)._max_t == 6
    assert scheduler(_cfg(pairs, tmp_path, "vlm.max_steps=12", "vlm.eval_every=2", "tune.max_t=4"))._max_t == 4


@pytest.mark.parametrize("result, train_epochs, stopped", [
    ({"epoch": 8.0, FINAL_REPORT: 0.0}, 2, True),   # a VLM trial at step 8 of 12: ASHA may stop it
    ({"epoch": 12.0, FINAL_REPORT: 1.0}, 2, False),  # its last report: it is finishing
    ({"epoch": 1.0}, 2, False),                     # a fusion trial's last epoch (epochs 0 and 1)
    ({"epoch": 0.0}, 2, True),                      # a fusion trial before its last epoch
])
def test_a_trial_is_kept_only_at_its_last_report(monkeypatch, pairs, tmp_path, result, train_epochs, stopped):
    """ASHA itself says stop; the scheduler keeps the trial going only when the report is its last."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from mmlnb_dist.tuning.algorithms import scheduler

    cfg = _cfg(pairs, tmp_path, "vlm.max_steps=12", "vlm.eval_every=2", f"train.epochs={train_epochs}")
    sched = scheduler(cfg)
    monkeypatch.setattr(ASHAScheduler, "on_trial_result", lambda self, controller, trial, res: TrialScheduler.STOP)
    action = sched.on_trial_result(None, None, result)
    assert action == (TrialScheduler.STOP if stopped else TrialScheduler.CONTINUE)


def test_a_grace_period_beyond_the_validation_count_is_refused_naming_it(pairs, tmp_path):
    from mmlnb_dist.tuning.checks import check_search

    cfg = _cfg(pairs, tmp_path, "vlm.max_steps=12", "vlm.eval_every=4", "tune.grace_period=5", "train.epochs=20")
    with pytest.raises(ConfigError, match=r"tune\.grace_period=5 is more than the 3 report\(s\) a "
                                          r"tune\.recipe=vlm trial of this config makes") as err:
        check_search(cfg)
    assert "at most 3" in str(err.value)
    check_search(_cfg(pairs, tmp_path, "vlm.max_steps=12", "vlm.eval_every=4", "tune.grace_period=3"))


def test_a_space_that_changes_the_validation_count_asks_for_max_t(pairs, tmp_path):
    from mmlnb_dist.tuning.checks import check_search
    from mmlnb_dist.tuning.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text("params:\n  vlm.eval_every: {choice: [2, 4]}\n  vlm.lr: {loguniform: [1.0e-4, 1.0e-3]}\n")
    cfg = _cfg(pairs, tmp_path, "vlm.max_steps=12", "vlm.eval_every=4")
    with pytest.raises(ConfigError, match=r"space\.yaml varies vlm\.eval_every, so tune\.recipe=vlm trials make "
                                          r"different numbers of reports.*set tune\.max_t"):
        check_search(cfg, load_space(path), path)
    check_search(_cfg(pairs, tmp_path, "vlm.max_steps=12", "vlm.eval_every=4", "tune.max_t=6"), load_space(path), path)
    check_search(_cfg(pairs, tmp_path, "vlm.eval_every=4", "tune.scheduler=fifo"), load_space(path), path)


def test_a_diverged_trials_report_is_marked_final(monkeypatch, pairs, tmp_path):
    """The NaN report a diverged trial makes is its last; unmarked, a VLM trial's step was compared with
    train.epochs, and ASHA could stop the trial before its result file was written."""
    from mmlnb_dist.core.divergence import TrainingDiverged
    from mmlnb_dist.tuning import trial

    def diverges(cfg, env, report):
        report(4, {"val/loss": 1.0, FINAL_REPORT: 0.0})
        raise TrainingDiverged("loss is nan at step 5")

    monkeypatch.setattr(trial, "resolve_target", lambda recipe: diverges)
    reports, last = [], [None]

    def report(step, metrics):
        last[0] = step
        reports.append((step, metrics))

    assert "diverged" in trial.run_target("vlm", _cfg(pairs, tmp_path), None, report, last)
    assert reports[-1][0] == 5 and reports[-1][1][FINAL_REPORT] == 1.0 and reports[-1][1]["diverged"] == 1.0


def test_the_scheduler_takes_the_horizon_check_search_found_without_reading_the_pairs_again(pairs, tmp_path,
                                                                                              monkeypatch):
    """`tune` counted the train pairs (a full read of the train shards) in `check_search` and again in `scheduler`:
    it now passes check_search's max_t on."""
    from mmlnb_dist.recipes.vlm import batches
    from mmlnb_dist.tuning.algorithms import scheduler
    from mmlnb_dist.tuning.checks import check_search

    cfg = _cfg(pairs, tmp_path, "vlm.max_steps=12", "vlm.eval_every=2")
    max_t = check_search(cfg)
    assert max_t == 6
    monkeypatch.setattr(batches, "count_pairs", lambda *a, **k: pytest.fail("the pairs were read again"))
    assert scheduler(cfg, max_t)._max_t == 6
    assert check_search(_cfg(pairs, tmp_path, "tune.scheduler=fifo")) is None

"""A search space that varies `train.epochs` under ASHA: its trials make as many reports as they train epochs,
while ASHA's max_t and the scheduler's "last report" rule came from the base config's `train.epochs`. A trial
with more epochs was stopped at max_t in the middle of its training (no export, no result file); one with fewer
was not known to be at its last epoch, so a rung could stop it while it evaluated the test split and exported.
Now such a space needs `tune.max_t` (or FIFO), and each epoch-reporting trial marks its own last epoch's report
final, as VLM trials already did."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.core.recipe import FINAL_REPORT
from mmlnb_dist.tuning.checks import check_search
from mmlnb_dist.tuning.space import load_space

CPU_DEMO = Path(__file__).resolve().parents[2] / "launch" / "profiles" / "cpu-demo.yaml"


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  train.epochs: {choice: [3, 6]}\n  train.lr: {loguniform: [1.0e-4, 1.0e-3]}\n")
    return path


def test_a_space_varying_train_epochs_under_asha_needs_max_t(space):
    base = ["tune.scheduler=asha", "tune.grace_period=1", "train.epochs=4"]
    with pytest.raises(ConfigError, match=r"space\.yaml varies train\.epochs, so tune\.recipe=fusion trials make "
                                          r"different numbers of reports.*set tune\.max_t"):
        check_search(load_config(CPU_DEMO, base), load_space(space), space)
    assert check_search(load_config(CPU_DEMO, [*base, "tune.max_t=6"]), load_space(space), space) == 6
    assert check_search(load_config(CPU_DEMO, [*base, "tune.scheduler=fifo"]), load_space(space), space) is None


def test_each_epoch_trial_marks_the_report_of_its_own_last_epoch_final(tmp_path, monkeypatch):
    """A trial of 2 epochs (base config: 9) reports epoch 1 as final, epoch 0 not."""
    from mmlnb_dist.tuning import trial

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}", "run.name=t", "train.epochs=2"])

    def two_epochs(recipe, cfg, env, report, last_epoch):
        for epoch in range(cfg.train.epochs):
            report(epoch, {"val/balanced_accuracy": 0.5 + epoch / 10})
        return {}

    monkeypatch.setattr(trial, "run_target", two_epochs)
    reports = []
    trial.run_rank(cfg.model_dump(mode="json"), "fusion", DistEnv(), lambda e, m: reports.append((e, m)), "node")
    assert [(e, m[FINAL_REPORT]) for e, m in reports] == [(0, 0.0), (1, 1.0)]
    assert reports[1][1]["val/balanced_accuracy"] == pytest.approx(0.6)

"""A trial that finished before the driver was killed is restored as unfinished by Tune and reports its result file
once (`trial_main`): Tune's `training_iteration` for it is then 1, and `trials.csv` said the trial made 1 report
while it trained 3 epochs. The result file now records how many reports the trial made, and its row shows that.
No Ray: `run_rank` with a fake recipe, then `trial_rows` with a fake restored result."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mmlnb_dist.config import load_config
from mmlnb_dist.core.distributed import DistEnv

CPU_DEMO = Path(__file__).resolve().parents[2] / "launch" / "profiles" / "cpu-demo.yaml"
METRIC = "val/balanced_accuracy"


def test_a_finished_trial_restored_after_a_kill_keeps_its_report_count(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import trial
    from mmlnb_dist.tuning.results import trial_rows

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}", "run.name=it-t1", "train.epochs=3",
                                 "tune.name=it", "tracking.backends=[stdout]"])

    def three_epochs(recipe, cfg, env, report, last_epoch):
        for epoch in range(3):
            report(epoch, {METRIC: 0.5 + epoch / 10})
        return {METRIC: 0.7}

    monkeypatch.setattr(trial, "run_target", three_epochs)
    trial.run_rank(cfg.model_dump(mode="json"), "fusion", DistEnv(), lambda e, m: None, "node")
    # the restored trial's one report of its result file: Tune counts 1 iteration
    restored = SimpleNamespace(config={}, error=None, metrics_dataframe=None,
                               metrics={METRIC: 0.7, "trial_id": "t1", "training_iteration": 1})
    rows = trial_rows([restored], {"trials": tmp_path}, cfg)
    assert rows[0]["iterations"] == 3
    # a trial stopped early (no result file) still shows Tune's count
    stopped = SimpleNamespace(config={}, error=None, metrics_dataframe=None,
                              metrics={METRIC: 0.6, "trial_id": "t2", "training_iteration": 2})
    assert trial_rows([stopped], {"trials": tmp_path}, cfg)[0]["iterations"] == 2

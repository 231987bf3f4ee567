"""A trial that Ray Tune's scheduler (ASHA) stops early ends its tracked run FINISHED, not FAILED.

Ray 2.60 stops a function trainable from inside its report call: `ray.train._internal.session` does `sys.exit(0)`
when the trial's stop event is set, so the recipe sees `SystemExit(0)` out of its report hook. `core.recipe.run`
mapped only KeyboardInterrupt to KILLED and let this fall through as FAILED: stopped trials showed as failed
child runs in MLflow, and the trial's log ended with `ERROR ... stopped: 0` and a SystemExit traceback. A clean
stop (code 0 or None) now closes the run FINISHED with the tag `stopped_early=true`, logs no error, and is
re-raised so that Ray sees it; any other exit code is still a failure."""
from __future__ import annotations

import logging

import pytest


class StoppedAtReport:
    """A recipe that trains one epoch, reports, and is stopped there by the report hook (as Tune stops it)."""

    name = "stopped"
    statuses: list = []

    def __init__(self, cfg, env, report=None):
        from pathlib import Path

        self.cfg, self.env, self.report = cfg, env, report
        self.run_dir = Path(cfg.run.dir)
        self.logger = None

    def setup(self) -> None:
        from mmlnb_dist.core.tracking.loggers import build_logger

        self.logger = build_logger(self.cfg.tracking, self.cfg.run, self.env.rank, self.run_dir, "train",
                                   tags={"recipe": self.name})

    def train(self) -> dict:
        self.logger.log_metrics({"val/loss": 0.5}, step=1)
        self.report(1, {"val/loss": 0.5})
        return {"val/loss": 0.5}

    def evaluate(self, split):
        return {}

    def save_checkpoint(self):
        return None

    def cleanup(self, status: str = "FINISHED") -> None:
        type(self).statuses.append(status)
        if self.logger is not None:
            self.logger.close(status)


def _exit_with(code):
    def report(step, metrics):
        raise SystemExit(code)
    return report


def _only_run(out):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{(out / 'mlflow.db').resolve()}")
    (only,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return only


@pytest.mark.parametrize("code, status, tagged", [(0, "FINISHED", True), (None, "FINISHED", True),
                                                  (3, "FAILED", False)])
def test_a_run_stopped_by_the_scheduler_at_a_report_ends_finished_and_lets_the_stop_through(
        tmp_path, code, status, tagged):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.recipe import run

    out = tmp_path / "runs"
    cfg = load_config(None, [f"run.output_dir={out}", "run.name=stopped", "tracking.backends=[mlflow]"])
    StoppedAtReport.statuses.clear()
    with pytest.raises(SystemExit) as stopped:
        run(StoppedAtReport, cfg, report=_exit_with(code))
    assert stopped.value.code == code  # re-raised as it came: Ray's function runner sees its own stop
    assert StoppedAtReport.statuses == [status]
    logged = _only_run(out)
    assert logged.info.status == status
    assert logged.data.tags.get("stopped_early") == ("true" if tagged else None)


@pytest.mark.parametrize("code, clean", [(0, True), (None, True), (2, False), ("boom", False)])
def test_the_command_log_records_a_clean_stop_without_an_error_or_a_traceback(tmp_path, code, clean):
    from mmlnb_dist.core.logging import command_log

    path = tmp_path / "trial.log"
    with pytest.raises(SystemExit), command_log(path):
        logging.getLogger("mmlnb_dist.test").info("epoch 1 done")
        raise SystemExit(code)
    text = path.read_text()
    assert "epoch 1 done" in text
    if clean:
        assert " ERROR " not in text and "Traceback" not in text, text
        assert "stopped early" in text.splitlines()[-1], text  # the last record still says why it ended
    else:
        assert " ERROR " in text and f"stopped: {code}" in text, text


def test_a_trial_stopped_in_a_kept_worker_group_ends_finished_too(tmp_path):
    """A trial run in a kept worker group (`tune.reuse_workers`) is stopped by `tuning.pool`'s own TrialStopped,
    not Ray's SystemExit: it ended its tracked run FAILED, as every ASHA stop did before."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.tuning.pool import TrialStopped

    def stop(step, metrics):
        raise TrialStopped("stopped by the scheduler after epoch 1")

    out = tmp_path / "runs"
    cfg = load_config(None, [f"run.output_dir={out}", "run.name=stopped", "tracking.backends=[mlflow]"])
    StoppedAtReport.statuses.clear()
    with pytest.raises(TrialStopped, match="after epoch 1"):
        run(StoppedAtReport, cfg, report=stop)
    assert StoppedAtReport.statuses == ["FINISHED"]
    logged = _only_run(out)
    assert logged.info.status == "FINISHED" and logged.data.tags.get("stopped_early") == "true"

"""Ctrl-C (or SIGTERM) during an ablation study run as Ray Tune trials ends it as interrupted (the CLI's exit 130):
Tune's `tuner.fit()` caught SIGINT itself, stopped the trials and returned as if every run had ended, so the study
went on to its table with runs missing. The same command goes on: runs already trained are skipped."""
from __future__ import annotations

import signal
import threading
from types import SimpleNamespace

import pytest

from support.tune_signals import install_tune_like_handler


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_trials_interrupts_the_study(tmp_path, monkeypatch, signum):
    import ray
    from ray import tune

    from mmlnb_dist.config import load_config
    from mmlnb_dist.studies import RowJob
    from mmlnb_dist.tuning.study import train_as_trials

    stopped = []

    class Tuner:  # behaves as Tune does on a stop signal: stops the trials and returns them (errors: none)
        def __init__(self, *args, **kwargs):
            pass

        def fit(self):
            install_tune_like_handler(stopped)
            signal.pthread_kill(threading.get_ident(), signum)
            return [SimpleNamespace(config={"run": "a-seed0"}, error=None, metrics={})]

    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # no Ray started
    monkeypatch.setattr(tune, "Tuner", Tuner)
    monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: fn)
    monkeypatch.setattr(tune, "with_resources", lambda fn, res: fn)
    cfg = load_config(None, [f"run.output_dir={tmp_path}/runs", "run.name=study", "tune.max_concurrent=2",
                             "tracking.backends=[stdout]"])
    run_cfg = load_config(None, [f"run.output_dir={tmp_path}/runs/study", "run.name=a-seed0",
                                 "tracking.backends=[stdout]"])
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    with pytest.raises(KeyboardInterrupt):
        train_as_trials(cfg, {"a-seed0": RowJob("a", 0, run_cfg, "f" * 16)})
    assert stopped == [signal.SIGUSR1]  # Tune's graceful stop was asked (it saves its state)
    assert {s: signal.getsignal(s) for s in before} == before

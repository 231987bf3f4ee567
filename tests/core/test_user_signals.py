"""A scheduler's warning signal (Slurm `#SBATCH --signal=USR1@120`, the form PyTorch Lightning's Slurm users know;
LSF and PBS send USR2) reached a rank started without a launch/ wrapper (`mmlnb-dist train` in a job script,
launch/train_single_4090.sh, which execs it): Python's default for SIGUSR1 ended the process at once, with no
checkpoint and its MLflow run left RUNNING. It is now the graceful stop SIGTERM is (`core.signals`)."""
from __future__ import annotations

import signal

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.signals import GracefulStop, Terminated, sigterm_as_interrupt

USER_SIGNALS = [signal.SIGUSR1, signal.SIGUSR2]


@pytest.fixture(autouse=True)
def unhandled_signals_recorded():
    """Python's default for these signals would end the test process: record them instead, so a handler missing
    fails the test rather than the runner."""
    reached = []
    previous = {sig: signal.signal(sig, lambda signum, frame: reached.append(signum)) for sig in USER_SIGNALS}
    yield reached
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", USER_SIGNALS, ids=["USR1", "USR2"])
def test_a_user_signal_while_training_asks_for_the_graceful_stop(sig, caplog):
    with sigterm_as_interrupt():
        before = signal.getsignal(sig)
        with GracefulStop() as stop:
            signal.raise_signal(sig)
            assert stop.requested and stop.agreed(DistEnv())
        assert signal.getsignal(sig) == before
    assert f"{sig.name} received: stopping after the current optimizer step" in caplog.text


@pytest.mark.parametrize("sig", USER_SIGNALS, ids=["USR1", "USR2"])
def test_a_user_signal_outside_training_ends_the_command_as_interrupted(sig):
    before = signal.getsignal(sig)
    with sigterm_as_interrupt():
        with pytest.raises(Terminated):
            signal.raise_signal(sig)
    assert signal.getsignal(sig) == before


def test_loader_workers_ignore_the_schedulers_warning_signal(monkeypatch):
    """Slurm's `--signal=USR1@...` reaches every process of the step, the loader workers too: with the default
    they died and the training process crashed at its next batch before it could checkpoint. A worker leaves the
    signal to its parent."""
    from mmlnb_dist.data import loader

    monkeypatch.setattr(loader.threading, "Thread", lambda *a, **k: type("T", (), {"start": lambda self: None})())
    monkeypatch.setattr(loader.signal, "pthread_sigmask", lambda how, mask: set())
    previous = {sig: signal.getsignal(sig) for sig in USER_SIGNALS}
    try:
        loader.sigterm_from_parent_only(0)
        assert [signal.getsignal(sig) for sig in USER_SIGNALS] == [signal.SIG_IGN, signal.SIG_IGN]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

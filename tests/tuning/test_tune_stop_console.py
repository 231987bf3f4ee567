"""What a stopped search prints. The driver's own warning says the search stops and how to resume it
(`tune.resume=true`); Ray Tune added two warnings of its own under it: "Stop signal received (e.g. via
SIGINT/Ctrl+C)" (also for a SIGTERM) and "Resume experiment with: Tuner.restore(path=..., trainable=...)", a Python
call a user of the command cannot make. While the search runs those two are dropped; Ray's other warnings stay."""
from __future__ import annotations

import logging

RAY_TUNE = "ray.tune.tune"  # the logger of ray/tune/tune.py, which prints both


class _Kept(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _say(logger):
    logger.warning("Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run. This will try to "
                   "checkpoint the experiment state one last time. Press CTRL+C (or send SIGINT/SIGKILL/SIGTERM) "
                   "to skip. ")
    logger.warning("Experiment has been interrupted, but the most recent state was saved.\nResume experiment with: "
                   "Tuner.restore(path=\"/tmp/x/tune/search\", trainable=...)")
    logger.warning("Trial trial_main_1 errored after 0 iterations")


def test_rays_own_stop_notices_are_dropped_while_the_search_runs_and_its_other_warnings_stay():
    from mmlnb_dist.tuning.stop import GracefulSearchStop

    logger, kept = logging.getLogger(RAY_TUNE), _Kept()
    logger.addHandler(kept)
    try:
        with GracefulSearchStop():
            _say(logger)
        assert kept.messages == ["Trial trial_main_1 errored after 0 iterations"]
        kept.messages.clear()
        _say(logger)  # outside a search: Ray's logger as it was
        assert len(kept.messages) == 3
    finally:
        logger.removeHandler(kept)

"""Slides tiled as Ray tasks (`slides tile --ray-address ADDR`): one task per slide, on a cluster or a fresh
local instance."""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List

from ..core.signals import sigterm_handler_kept
from .slide_task import SlideJob, process_slide

log = logging.getLogger(__name__)


def connect(address: str) -> bool:
    """Join the cluster at `address` (`auto`, HOST:PORT, ray://HOST:10001), or start a fresh instance for
    `local`; an already initialised Ray (a test, a notebook) is used as it is. Returns True when this call
    initialised Ray, so the caller shuts it down again."""
    import ray

    if ray.is_initialized():
        return False
    # "local" goes to Ray as "local": a bare ray.init() (address None) joins the cluster recorded in
    # <ray tmp>/ray_current_cluster by an earlier `ray start`, which may be someone else's or long dead.
    with sigterm_handler_kept():  # a SIGTERM still ends `slides tile` as interrupted, not in Ray's abort
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    log.info("tiling on Ray (%s): %s", address, ray.cluster_resources())
    return True


def ray_results(jobs: List[SlideJob], address: str,
                crashed: Callable[[SlideJob, BaseException], Dict[str, Any]]) -> Iterable[Dict[str, Any]]:
    """One Ray task per slide; results in completion order. A task whose worker died (process_slide itself never
    raises for bad input) gives `crashed(job, error)` instead."""
    import ray

    started = connect(address)
    pending: List[Any] = []
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(process_slide)
        refs = {task.remote(job): job for job in jobs}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(ready[0])
            except Exception as err:  # noqa: BLE001 - a lost worker or node: that slide fails, the rest go on
                yield crashed(refs[ready[0]], err)
    finally:
        # Stopped early (Ctrl-C, SIGTERM, an error): on a Ray this call did not start (a notebook's, a test's) the
        # queued slides went on being tiled into <out>.work/ after `slides tile` had returned, racing a rerun's
        # tasks for the same staging folders. Cancelled, as the process pool cancels its queued slides.
        for ref in pending:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 - a task finished meanwhile, or its worker is gone: nothing to stop
                pass
        if started:
            ray.shutdown()

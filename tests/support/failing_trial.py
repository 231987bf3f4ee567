"""A trial target (`tune.recipe=support.failing_trial:run`) whose rank 1 fails when the learning rate is below 1e-6,
while rank 0 goes on into the fusion recipe and waits in its first collective: the case where a kept worker
group (`tune.worker_pool`) must be discarded rather than handed to the next trial."""
from __future__ import annotations


def run(cfg, env, report):
    from mmlnb_dist.tuning.trial import resolve_target

    if cfg.train.lr < 1e-6 and env.rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    return resolve_target("fusion")(cfg, env, report)

"""A seconds-long stand-in recipe with the recipe contract, for testing the search machinery itself.

`tune.recipe=mmlnb_dist.tuning.smoke:run` runs it: a softmax regression on fixed random "features" whose
learning rate comes from `train.lr`; it logs through `build_logger`, reports every epoch, shares
`run.cache_dir` (the search's shared cache) through `<cache>/smoke-features-<seed>.npy` (computed once, then hit).
It is not a model of anything: the real trials run the recipes of the recipe table.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np


def _features(cache_dir: Optional[Path], seed: int) -> tuple:
    """The 'frozen encoder' output: computed once per cache dir (an atomic write), then read back."""
    path = cache_dir / f"smoke-features-{seed}.npy" if cache_dir else None
    if path is not None and path.is_file():
        return np.load(path), True
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    time.sleep(0.5)  # stands in for an encoder forward pass
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.npy")
        np.save(tmp, x)
        tmp.replace(path)
    return x, False


def run(cfg, env=None, report: Optional[Callable[[int, Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    from ..core.tracking import build_logger

    rank = env.rank if env is not None else 0
    run_dir = cfg.run.dir
    logger = build_logger(cfg.tracking, cfg.run, rank, run_dir, "smoke", config=cfg)
    cache_dir = cfg.run.cache_dir  # the tune driver points every trial at one folder
    x, hit = _features(Path(cache_dir) if cache_dir else None, cfg.run.seed)
    w_true = np.random.default_rng(123).normal(size=(16, 3))
    y = (x @ w_true).argmax(1)
    xtr, ytr, xva, yva = x[:240], y[:240], x[240:], y[240:]
    w = np.zeros((16, 3))
    metrics: Dict[str, float] = {}
    for epoch in range(cfg.train.epochs):
        logits = xtr @ w
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(ytr)), ytr] -= 1
        w -= cfg.train.lr * 100 * xtr.T @ p / len(ytr)
        lv = xva @ w
        pv = np.exp(lv - lv.max(1, keepdims=True))
        pv /= pv.sum(1, keepdims=True)
        loss = float(-np.log(pv[np.arange(len(yva)), yva] + 1e-9).mean())
        acc = float((pv.argmax(1) == yva).mean())
        metrics = {"val/loss": loss, "val/accuracy": acc, "val/balanced_accuracy": acc}
        logger.log_metrics(metrics, epoch)
        if report is not None:
            report(epoch, metrics)
        time.sleep(0.2)
    logger.close()
    out = {"run_dir": str(run_dir), **metrics, "cache/hits": int(hit), "cache/misses": int(not hit)}
    (Path(run_dir) / "result.json").write_text(json.dumps(out))
    return out

"""Mutation audit of the stand-in recipe the search machinery's tests run (`tuning.smoke`): it must keep the recipe
contract those tests rely on (one report per epoch, a result file, the shared cache computed once then hit, its
learning rate read from `train.lr`), run in-process here without Ray."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmlnb_dist.config import load_config


def _run(tmp_path, name, cache, *extra):
    from mmlnb_dist.tuning.smoke import run

    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", f"run.name={name}", "tracking.backends=[stdout]",
                                   "train.epochs=2", *extra])
    cfg.run.cache_dir = cache
    Path(cfg.run.dir).mkdir(parents=True, exist_ok=True)
    reports = []
    out = run(cfg, None, lambda epoch, metrics: reports.append((epoch, dict(metrics))))
    return out, reports, Path(cfg.run.dir)


def test_the_smoke_recipe_reports_every_epoch_and_shares_its_cache(tmp_path):
    cache = tmp_path / "cache"
    first, reports, run_dir = _run(tmp_path, "a", cache)
    assert [e for e, _ in reports] == [0, 1]
    assert set(reports[-1][1]) == {"val/loss", "val/accuracy", "val/balanced_accuracy"}
    assert json.loads((run_dir / "result.json").read_text()) == first
    assert (first["cache/hits"], first["cache/misses"]) == (0, 1)
    assert first["val/loss"] == reports[-1][1]["val/loss"]
    features = cache / "smoke-features-0.npy"
    assert features.is_file() and not [p for p in cache.iterdir() if p.name.startswith(".")]  # moved into place

    again, _, _ = _run(tmp_path, "b", cache)
    assert (again["cache/hits"], again["cache/misses"]) == (1, 0)
    assert again["val/loss"] == first["val/loss"]  # the same features: the same run
    assert np.load(features).shape == (300, 16)


def test_the_learning_rate_and_the_seed_change_the_run(tmp_path):
    base, _, _ = _run(tmp_path, "a", None)
    faster, _, _ = _run(tmp_path, "b", None, "train.lr=0.01")
    other, _, _ = _run(tmp_path, "c", None, "run.seed=1")
    assert faster["val/loss"] != base["val/loss"] and other["val/loss"] != base["val/loss"]
    assert (base["cache/hits"], base["cache/misses"]) == (0, 1)  # no shared cache: computed every time

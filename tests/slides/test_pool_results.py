"""`_pool_results`, the process pool `slides tile` runs slides in: one result per slide, each its own slide's,
whatever worker dies; a dead worker costs only the slide it was on, reported as crashed with its label and file.

The slides here are missing files: `process_slide` reports each as failed at once (no slide to read), so what is
checked is the pool's bookkeeping, not tiling. A job whose normaliser unpickles to `os._exit` kills its worker."""
from __future__ import annotations

import os
from collections import Counter

import pytest


class _KillsWorker:
    """Unpickling this calls os._exit in the worker: stands in for a decoder segfault on a corrupt slide."""

    def __reduce__(self):
        return (os._exit, (3,))


@pytest.fixture(scope="module")
def cfg():
    from mmlnb_dist.config import load_config

    return load_config(None, []).slides


def _jobs(cfg, tmp_path, n: int, killers=()):
    from mmlnb_dist.slides.slide_task import SlideJob

    labels = ("UD", "PD", "D")
    jobs = [SlideJob(f"s{i}", tmp_path / f"file-{i}.tif", labels[i % 3], cfg, tmp_path / "work", f"fp{i}")
            for i in range(n)]
    for i in killers:
        jobs[i].normalizer = _KillsWorker()
    return jobs


def _check_one_result_each(jobs, results, crashed_ids):
    assert Counter(r["slide_id"] for r in results) == Counter(j.slide_id for j in jobs)  # none lost, none twice
    by_id = {r["slide_id"]: r for r in results}
    for job in jobs:
        r = by_id[job.slide_id]
        assert (r["label"], r["file"], r["status"]) == (job.label, job.path.name, "failed")
        if job.slide_id in crashed_ids:
            assert r["error"].startswith(f"worker crashed on {job.path.name}: BrokenProcessPool"), r["error"]
        else:  # its own outcome (its file is missing), not a crash, and never another slide's
            assert "worker crashed" not in r["error"] and job.path.name in r["error"], r["error"]


def test_every_slide_gives_exactly_its_own_result(cfg, tmp_path):
    from mmlnb_dist.slides.tiler import _pool_results

    jobs = _jobs(cfg, tmp_path, 5)
    _check_one_result_each(jobs, list(_pool_results(jobs, 3)), crashed_ids=())


@pytest.mark.parametrize("killers", [(0,), (1, 3)], ids=["first-slide-dies", "two-slides-die"])
def test_a_dying_worker_costs_only_its_own_slide(cfg, tmp_path, killers):
    from mmlnb_dist.slides.tiler import _pool_results

    jobs = _jobs(cfg, tmp_path, 4, killers)
    results = list(_pool_results(jobs, 2))
    _check_one_result_each(jobs, results, crashed_ids={jobs[i].slide_id for i in killers})

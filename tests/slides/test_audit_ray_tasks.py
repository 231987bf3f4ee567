"""Audit of tiling on Ray (`slides.ray_tasks`) with a stand-in `ray` module: one task per slide (one CPU, one
retry), results as they complete, a task whose worker died reported through `crashed` while the rest go on, the
address passed as given (`local` too), and Ray shut down only when this call started it."""
from __future__ import annotations

import sys
import types

import pytest

from mmlnb_dist.slides import ray_tasks


class FakeRay(types.ModuleType):
    def __init__(self, initialized: bool):
        super().__init__("ray")
        self.initialized, self.calls = initialized, []

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        self.initialized = True

    def cluster_resources(self):
        return {"CPU": 2.0}

    def remote(self, **options):
        self.calls.append(("remote", options))

        def wrap(fn):
            return types.SimpleNamespace(remote=lambda job: ("ref", job, fn))
        return wrap

    def wait(self, pending, num_returns):
        assert num_returns == 1
        return [pending[-1]], pending[:-1]  # the last submitted finishes first

    def get(self, ref):
        _, job, fn = ref
        if job == "dies":
            raise RuntimeError("worker died")
        return fn(job)

    def shutdown(self):
        self.calls.append(("shutdown", {}))

    def cancel(self, ref):
        self.calls.append(("cancel", ref[1]))


@pytest.mark.parametrize("initialized", [False, True])
def test_one_task_per_slide_in_completion_order_and_a_lost_worker_fails_its_slide_only(monkeypatch, initialized):
    fake = FakeRay(initialized)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(ray_tasks, "process_slide", lambda job: {"slide_id": job, "status": "ok"})
    crashed = []

    def on_crash(job, err):
        crashed.append((job, str(err)))
        return {"slide_id": job, "status": "failed"}

    results = list(ray_tasks.ray_results(["a", "dies", "c"], "local", on_crash))
    assert results == [{"slide_id": "c", "status": "ok"}, {"slide_id": "dies", "status": "failed"},
                       {"slide_id": "a", "status": "ok"}]
    assert crashed == [("dies", "worker died")]
    kinds = [name for name, _ in fake.calls]
    assert ("remote", {"num_cpus": 1, "max_retries": 1}) in fake.calls
    if initialized:  # a notebook's or a test's Ray: used as it is and left running
        assert "init" not in kinds and "shutdown" not in kinds
    else:
        assert fake.calls[0] == ("init", {"address": "local", "include_dashboard": False, "log_to_driver": False})
        assert kinds.count("shutdown") == 1 and kinds[-1] == "shutdown"


def test_ray_is_shut_down_when_the_consumer_stops_early(monkeypatch):
    fake = FakeRay(False)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(ray_tasks, "process_slide", lambda job: {"slide_id": job})
    results = ray_tasks.ray_results(["a", "b"], "auto", lambda job, err: {})
    assert next(results) == {"slide_id": "b"}
    results.close()  # e.g. an interrupted `slides tile`
    assert [name for name, _ in fake.calls][-1] == "shutdown"
    assert ray_tasks.connect("auto") is False  # already initialised now


@pytest.mark.parametrize("initialized", [False, True])
def test_the_queued_slides_are_cancelled_when_the_consumer_stops_early(monkeypatch, initialized):
    """On a Ray this call did not start (a notebook's), the slides still queued went on being tiled into the
    staging folder after an interrupted `slides tile` returned, racing a rerun for the same folders."""
    fake = FakeRay(initialized)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(ray_tasks, "process_slide", lambda job: {"slide_id": job})
    results = ray_tasks.ray_results(["a", "b", "c"], "auto", lambda job, err: {})
    assert next(results) == {"slide_id": "c"}
    results.close()
    assert sorted(arg for name, arg in fake.calls if name == "cancel") == ["a", "b"]
    kinds = [name for name, _ in fake.calls]
    assert ("shutdown" in kinds) is (not initialized)


def test_a_finished_run_cancels_nothing(monkeypatch):
    fake = FakeRay(True)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(ray_tasks, "process_slide", lambda job: {"slide_id": job})
    assert len(list(ray_tasks.ray_results(["a", "b"], "auto", lambda job, err: {}))) == 2
    assert not [name for name, _ in fake.calls if name == "cancel"]

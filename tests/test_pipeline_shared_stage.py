"""Concurrent jobs on one shared stage output (a search's `vlm-fusion` trials with equal VLM settings share the
fine-tuned adapter and the descriptions in `run.cache_dir`): the second waits for the first and takes what it
built, instead of failing on the output's lock (or, earlier, racing it); when the first stops, the waiting job
resumes its work."""
from __future__ import annotations

import threading
import time

from mmlnb_dist.core.runlock import FolderInUseError, FolderLock
from mmlnb_dist.pipeline.stages import read_stage, run_stage


def _two_jobs(tmp_path, first_fails: bool, shared: bool = True):
    out = tmp_path / "cache" / "described" / "fp1"
    started, release, calls, said, results = threading.Event(), threading.Event(), [], [], {}

    def work(resume):
        with FolderLock(out, "describe"):  # what describe and fine-tuning hold on their output
            calls.append(resume)
            started.set()
            assert release.wait(20)
            if first_fails and len(calls) == 1:
                raise RuntimeError("CUDA out of memory")
            (out / "shard-0.tar").write_text("x")
        return {"num_samples": 1}

    def job(name):
        try:
            results[name] = run_stage("describe", out, "fp1", work, say=said.append, shared=shared)
        except BaseException as err:  # noqa: BLE001 - the test reads it
            results[name] = err

    first = threading.Thread(target=job, args=("first",))
    first.start()
    assert started.wait(20)
    second = threading.Thread(target=job, args=("second",))
    second.start()
    deadline = time.time() + 20
    while shared and not any("waiting for it to finish" in s for s in said) and time.time() < deadline:
        time.sleep(0.05)
    second.join(timeout=0.5 if shared else 20)
    release.set()
    first.join(20)
    second.join(20)
    return out, calls, said, results


def test_the_second_job_waits_for_the_first_and_takes_what_it_built(tmp_path):
    out, calls, said, results = _two_jobs(tmp_path, first_fails=False)
    assert calls == [False]  # built once
    assert results["first"].status == "ran" and results["second"].status == "skipped"
    assert any(f"another job is building {out}: waiting for it to finish" in s for s in said)
    assert read_stage(out)["status"] == "done" and (out / "shard-0.tar").exists()


def test_when_the_first_job_stops_the_waiting_job_resumes_its_work(tmp_path):
    out, calls, _, results = _two_jobs(tmp_path, first_fails=True)
    assert isinstance(results["first"], RuntimeError)
    assert calls == [False, True] and results["second"].status == "ran"
    assert read_stage(out)["status"] == "done"


def test_an_unshared_stage_still_refuses_a_second_job(tmp_path):
    """A pipeline's own outputs are not a cache: a second job on one is refused as before (it is a mistake)."""
    _, calls, _, results = _two_jobs(tmp_path, first_fails=False, shared=False)
    assert calls == [False]
    assert isinstance(results["second"], FolderInUseError)


def test_the_search_pipeline_marks_its_cached_stages_shared(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.pipeline import steps
    from mmlnb_dist.pipeline.stages import StageResult

    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}"])
    shards = StageResult("shards", tmp_path / "shards", "fpshards", False, 0.0, {})
    vlm = StageResult("finetune-vlm", tmp_path / "vlm", "fpvlm", False, 0.0, {"adapter_dir": None})
    assert steps.plan_finetune_vlm(cfg, shards, cache_root=tmp_path / "cache").shared
    assert steps.plan_describe(cfg, vlm, shards, cache_root=tmp_path / "cache").shared
    assert not steps.plan_finetune_vlm(cfg, shards).shared and not steps.plan_describe(cfg, vlm, shards).shared

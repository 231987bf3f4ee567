"""The demo pipeline's stage bookkeeping: skip what is up to date, resume what was interrupted, rebuild what
is stale, and never delete a folder the pipeline did not make."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.pipeline import fingerprint, run_stage


def _writer(out, calls):
    def work(resume):
        calls.append(resume)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.txt").write_text(str(len(calls)))
        return {"n": len(calls)}
    return work


def test_stage_runs_once_then_skips_until_its_fingerprint_changes(tmp_path):
    out, calls, logs = tmp_path / "stage", [], []
    first = run_stage("s", out, fingerprint("a", 1), _writer(out, calls), logs.append)
    again = run_stage("s", out, fingerprint("a", 1), _writer(out, calls), logs.append)
    changed = run_stage("s", out, fingerprint("a", 2), _writer(out, calls), logs.append)
    assert (first.skipped, again.skipped, changed.skipped) == (False, True, False)
    assert calls == [False, False]
    assert again.info["n"] == 1 and changed.info["n"] == 2
    assert any("skipped" in line for line in logs)
    assert any("rebuilding" in line for line in logs)


def test_interrupted_stage_resumes_with_the_same_fingerprint(tmp_path):
    out, calls = tmp_path / "stage", []

    def killed(resume):
        calls.append(resume)
        out.mkdir(parents=True, exist_ok=True)
        (out / "partial.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage("s", out, "fp", killed, lambda _: None)
    seen = []

    def finish(resume):
        seen.append((resume, (out / "partial.txt").exists()))
        return {"ok": True}

    ran = run_stage("s", out, "fp", finish, lambda _: None)
    assert not ran.skipped and ran.info["ok"] is True
    assert seen == [(True, True)]  # resumed, and the partial work was kept for it


def test_stale_output_is_removed_before_a_changed_stage_reruns(tmp_path):
    out, calls = tmp_path / "stage", []
    run_stage("s", out, "old", _writer(out, calls), lambda _: None)
    (out / "stale.txt").write_text("from the old inputs")
    run_stage("s", out, "new", _writer(out, calls), lambda _: None)
    assert not (out / "stale.txt").exists()


def test_a_folder_the_pipeline_did_not_make_is_never_deleted(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("user data")
    with pytest.raises(UserError, match="not made by this pipeline"):
        run_stage("s", out, "fp", _writer(out, []), lambda _: None)
    assert (out / "precious.txt").read_text() == "user data"


def test_fingerprint_is_order_insensitive_for_mappings_and_sensitive_to_values():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})

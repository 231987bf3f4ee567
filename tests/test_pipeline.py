"""The demo pipeline's stage skipping: a stage reruns exactly when what it was built from changes."""
from __future__ import annotations

from mmlnb_dist.pipeline import fingerprint, run_stage


def test_stage_runs_once_then_skips_until_its_fingerprint_changes(tmp_path):
    calls = []
    logs = []

    def work():
        calls.append(1)
        return {"n": len(calls)}

    out = tmp_path / "stage"
    first = run_stage("s", out, fingerprint("a", 1), work, logs.append)
    again = run_stage("s", out, fingerprint("a", 1), work, logs.append)
    changed = run_stage("s", out, fingerprint("a", 2), work, logs.append)
    assert (first.skipped, again.skipped, changed.skipped) == (False, True, False)
    assert len(calls) == 2
    assert again.info["n"] == 1 and changed.info["n"] == 2
    assert any("skipped" in line for line in logs)


def test_failed_stage_is_not_marked_done(tmp_path):
    out = tmp_path / "stage"

    def boom():
        raise RuntimeError("killed")

    try:
        run_stage("s", out, "fp", boom, lambda _: None)
    except RuntimeError:
        pass
    ran = run_stage("s", out, "fp", lambda: {"ok": True}, lambda _: None)
    assert not ran.skipped and ran.info["ok"] is True


def test_fingerprint_is_order_insensitive_for_mappings_and_sensitive_to_values():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})

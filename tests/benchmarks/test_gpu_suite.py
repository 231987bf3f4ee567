"""benchmarks/gpu_suite.py --tiny runs every row through the code paths the GPU run takes, and its JSON holds
every row with positive numbers (no timing thresholds)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"

# The figures each section must report, all positive.
REQUIRED = {
    "fusion": ("samples_per_s", "flops_per_step", "batch"),
    "vlm": ("tokens_per_s", "samples_per_s", "seq_len", "trainable_params"),
    "describe": ("descriptions_per_s", "tokens_per_s", "new_tokens"),
    "loader": ("samples_per_s", "samples"),
}


def run_suite(tmp_path: Path, *only: str) -> dict:
    out = tmp_path / "suite.json"
    cmd = [sys.executable, str(SUITE), "--tiny", "--out", str(out)] + (["--only", *only] if only else [])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| section | row |" in proc.stdout  # the one printed table
    return json.loads(out.read_text())


def check_rows(result: dict, expected: dict) -> None:
    env = result["environment"]
    assert env["device_name"] and env["torch"] and "cuda" in env
    rows = result["rows"]
    counts = {s: sum(r["section"] == s for r in rows) for s in expected}
    assert counts == expected, [(r["section"], r["name"], r["status"]) for r in rows]
    for row in rows:
        if row["status"] == "skipped":
            # The only row allowed to skip: ZeRO-Offload when DeepSpeed's CPU Adam cannot build, with the reason.
            assert "offload" in row["name"] and "CPUAdam" in row["reason"], row
            continue
        assert row["status"] == "ok", (row["name"], row.get("error"), row.get("traceback"))
        for key in REQUIRED[row["section"]]:
            assert isinstance(row[key], (int, float)) and row[key] > 0, (row["name"], key, row.get(key))


def test_tiny_fusion_and_loader_rows(tmp_path):
    result = run_suite(tmp_path, "fusion", "loader")
    check_rows(result, {"fusion": 3, "loader": 1})


# The other sections: together with the test above, every row of the suite (the fusion and loader rows are not
# run twice: that took a minute of CI).
@pytest.mark.slow  # about 60 s on two busy cores; the first ZeRO-Offload row builds DeepSpeed's CPU Adam (minutes)
def test_tiny_vlm_and_describe_rows(tmp_path):
    result = run_suite(tmp_path, "vlm")  # its describe rows included
    check_rows(result, {"fusion": 0, "vlm": 3, "describe": 2, "loader": 0})
    assert result["memory_references_gib"] == {"memory_plan": 20.4, "ms_swift": 22.0}


def test_a_run_stopped_between_rows_keeps_the_rows_it_measured(tmp_path, monkeypatch):
    """The GPU machine is lent for minutes: a run killed at its time limit must still leave its finished rows."""
    import runpy

    monkeypatch.syspath_prepend(str(SUITE.parent))
    from gpu_suite import loader

    def one_row_then_stopped(suite):
        suite.run_row("loader", "measured before the stop", lambda: {"samples_per_s": 12.5})
        raise KeyboardInterrupt  # what a time limit's SIGINT looks like between rows

    monkeypatch.setattr(loader, "add_rows", one_row_then_stopped)
    main = runpy.run_path(str(SUITE), run_name="gpu_suite_script")["main"]
    out = tmp_path / "suite.json"
    with pytest.raises(KeyboardInterrupt):
        main(["--tiny", "--out", str(out), "--only", "loader"])
    result = json.loads(out.read_text())
    assert result["complete"] is False and result["table"] is None
    assert [(r["name"], r["samples_per_s"], r["status"]) for r in result["rows"]] == [
        ("measured before the stop", 12.5, "ok")]
    assert not list(tmp_path.glob("*.partial"))

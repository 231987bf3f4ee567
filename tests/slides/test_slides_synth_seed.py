"""`slides synth --seed -1` created --out, took its lock and ended in numpy's "expected non-negative integer"
traceback from inside the first slide; a negative seed is now a usage error naming --seed, before anything is
written."""
from __future__ import annotations

from support.cli import run_cli


def test_a_negative_seed_is_a_usage_error_naming_it(tmp_path):
    out = tmp_path / "wsi"
    code, _, err = run_cli(["slides", "synth", "--per-class", "1", "--size", "1024", "--seed", "-1", "--out", str(out)])
    assert code == 2, err
    assert "--seed -1" in err and "Traceback" not in err, err
    assert not out.exists()

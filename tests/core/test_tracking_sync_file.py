"""`tracking sync FILE` with a file that is not a journal (config.yaml, metrics.jsonl) said "no MLflow journal in
FILE", as if FILE were a folder that lacked one: the refusal now says it is a file and which folder to give."""
from __future__ import annotations

from support.cli import run_cli


def test_sync_of_a_plain_file_says_it_is_a_file_and_names_its_folder(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    run_dir.mkdir(parents=True)
    cfg = run_dir / "config.yaml"
    cfg.write_text("run: {}\n")
    code, out, err = run_cli(["tracking", "sync", str(cfg)])
    assert code == 2, err
    assert f"{cfg} is a file" in err and f"tracking sync {run_dir}" in err, err
    assert "no MLflow journal in" not in err, err

"""Fault drill for `predict --vlm`: SIGKILL the real CLI just after its second chunk is journaled, rerun the same
command, and get exactly the files of an uninterrupted run, with only the inputs after those chunks described
and predicted again. A kill runs no cleanup (unlike Ctrl-C): the journal and a dead holder's lock record are what
the rerun finds."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from support.fusion import gate_env, gated_train_command, kill_at_gate, registered_model

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
CHUNK = 2


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    return registered_model(tmp_path_factory.mktemp("drill-predict"), "nb-drill")


def _args(r, out: Path):
    return ["predict", "--model", "models:/nb-drill@champion", str(r["shards"]), "--split", "val", "--vlm", "tiny",
            "--chunk-size", str(CHUNK), "--out", str(out), "--uri", r["uri"]]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


@pytest.mark.slow
def test_predict_killed_after_two_chunks_resumes_to_the_uninterrupted_files(registered, tmp_path):
    r, out = registered, tmp_path / "preds.csv"
    assert r["n_val"] > 3 * CHUNK
    cli = [PY, "-m", "mmlnb_dist.cli"]
    subprocess.run(cli + _args(r, tmp_path / "whole.csv"), cwd=tmp_path, env=_env(), check=True, timeout=600,
                   capture_output=True)

    proc = subprocess.Popen(gated_train_command(PY, _args(r, out)), cwd=tmp_path,
                            env=gate_env(_env(), tmp_path / "gate", "journaled:2"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert kill_at_gate(proc, tmp_path / "gate") == "journaled:2"
    journal = tmp_path / "preds.csv.resume" / "journal.jsonl"
    assert not out.exists() and len(journal.read_text().splitlines()) == 3  # the job, then two chunks

    again = subprocess.run(cli + _args(r, out), cwd=tmp_path, env=_env(), timeout=600, capture_output=True,
                           text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{r['n_val']} prediction(s)" in again.stdout
    assert f"({2 * CHUNK} input(s) done by the interrupted run it resumed)" in again.stdout, again.stdout
    assert not journal.parent.exists()
    for name in ("{}.csv", "{}.slides.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / name.format("preds")),
                                      pd.read_csv(tmp_path / name.format("whole")))

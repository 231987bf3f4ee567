"""Work that rank 0 does alone while the other ranks wait (the pipeline's tile, shards and register stages under a
launcher) may last hours: the waiting ranks must not fail at the collectives' timeout (30 minutes), and they must
stop at once when rank 0 dies instead of waiting for as long (`distributed.rank0_wait_s`, a week by default).

Two ranks of a gloo group run one `main_only` stage with the collectives' timeout at 2 s: rank 0 works for 6 s and
both ranks finish, rank 1 with rank 0's record; when rank 0's work fails, rank 1 stops within seconds although it
was told to wait an hour."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlnb_dist.core.tracking.server import free_port

ROOT = Path(__file__).resolve().parents[2]

RANK = """
import datetime, json, os, sys, time
from pathlib import Path
import torch.distributed as dist
rank, out, mode = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.sections import DistributedConfig
from mmlnb_dist.pipeline.stages import run_stage

env = DistEnv.from_environment()
cfg = DistributedConfig(rank0_wait_s=3600)
dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=2))

def work(resume):
    if mode == "fails":
        raise RuntimeError("rank 0's tiling failed")
    time.sleep(6)  # three times the collectives' timeout
    return {"tiles": 42}

result = run_stage("tile", out / "tiles", "fp", work, env=env, main_only=True, rank0_wait_s=cfg.rank0_wait_s)
(out / f"rank{rank}.json").write_text(json.dumps(dict(result.info)))
"""


def _ranks(out: Path, mode: str):
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), OMP_NUM_THREADS="1")
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", RANK, str(r), str(out), mode], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    ended = []
    for p in procs:
        output = p.communicate(timeout=300)[0]
        ended.append((p.returncode, time.monotonic() - t0, output))
    return ended


@pytest.mark.slow
def test_ranks_wait_for_rank0_longer_than_the_collectives_timeout(tmp_path):
    ended = _ranks(tmp_path, "works")
    assert [code for code, _, _ in ended] == [0, 0], "\n".join(out[-3000:] for _, _, out in ended)
    rank0 = json.loads((tmp_path / "rank0.json").read_text())  # the work's info and the record's time and runs
    assert {k: rank0[k] for k in ("tiles", "runs")} == {"tiles": 42, "runs": 1} and "wall_seconds" in rank0
    assert json.loads((tmp_path / "rank1.json").read_text())["tiles"] == 42  # read from rank 0's stage record


@pytest.mark.slow
def test_the_waiting_ranks_stop_at_once_when_rank0_fails(tmp_path):
    (rank0, _, out0), (rank1, waited, out1) = _ranks(tmp_path, "fails")
    assert rank0 != 0 and "rank 0's tiling failed" in out0
    assert rank1 != 0, out1  # an error, not a stage done without rank 0's output
    assert waited < 120, f"rank 1 waited {waited:.0f} s for a rank 0 that was gone"
    assert not (tmp_path / "rank1.json").exists()

"""Two "nodes" on one machine: two torchrun launchers (one process each) joined by a c10d rendezvous on 127.0.0.1
run `train` (fusion) and `describe` (tiny VLM) and give the same outputs as one launcher with two processes
(the same world size, 2): the final metrics and exported weights of `train` (fp32, seed 0), the described shards
of `describe`.

Each command's pair of runs is one module-scoped fixture that several tests read (CI time: see docs/scaling.md).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from mmlnb_dist.core.tracking.server import free_port

from support.fusion import CPU_DEMO, ROOT, epoch_records, make_shards
from support.processes import run_group
from support.vlm import make_pairs

pytestmark = pytest.mark.slow

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
HANG_GUARD_S = 600  # only against a hang: two launchers on two shared cores can take minutes


def _env() -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a launcher sets these; a stale one from the test process must not leak in
    return env


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"


def one_node(cli_args: List[str], log_dir: Path) -> subprocess.CompletedProcess:
    """One torchrun launcher with 2 local processes (the reference: world size 2 on one node)."""
    cmd = [PY, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "mmlnb_dist.cli", *cli_args]
    proc = run_group(cmd, cwd=ROOT, env=_env(), timeout=HANG_GUARD_S)
    (log_dir / "one-node.stderr").write_text(proc.stderr)
    _check(proc, "one node, 2 processes")
    return proc


def two_nodes(cli_args: List[str], log_dir: Path) -> List[subprocess.CompletedProcess]:
    """Two torchrun launchers, `--nnodes 2 --node-rank {0,1} --nproc-per-node 1`, meeting at a c10d rendezvous
    on 127.0.0.1 (as two machines would at the first node's address). Node 0 hosts the rendezvous store, as the
    node whose hostname is the endpoint would. Returns both launchers' results (stdout/stderr as text)."""
    endpoint = f"127.0.0.1:{free_port()}"
    procs, logs = [], []
    for node in (0, 1):
        cmd = [PY, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "two-nodes",
               "--rdzv-conf", f"is_host={int(node == 0)}", "-m", "mmlnb_dist.cli", *cli_args]
        out, err = (log_dir / f"node{node}.stdout").open("w"), (log_dir / f"node{node}.stderr").open("w")
        logs.append((out, err))
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=out, stderr=err, text=True))
    try:
        codes = [p.wait(timeout=HANG_GUARD_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for out, err in logs:
            out.close()
            err.close()
    results = [subprocess.CompletedProcess(p.args, code, (log_dir / f"node{n}.stdout").read_text(),
                                           (log_dir / f"node{n}.stderr").read_text())
               for n, (p, code) in enumerate(zip(procs, codes))]
    for node, proc in enumerate(results):
        _check(proc, f"node {node} of 2")
    return results


def _last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


# -- train --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def train_runs(tmp_path_factory):
    """The fusion classifier trained for 2 epochs (fp32, ZeRO-0, seed 0) on one node x 2 and on 2 nodes x 1."""
    tmp = tmp_path_factory.mktemp("multinode-train")
    shards = make_shards(tmp, n=120, size=64)

    def args(name: str) -> List[str]:
        return ["train", "--config", str(CPU_DEMO), f"data.shards={shards}", f"run.output_dir={tmp / 'runs'}",
                f"run.name={name}", "tracking.backends=[stdout]", "data.loader.num_workers=0",
                "data.loader.image_size=64", "run.seed=0", "train.epochs=2", "distributed.precision=fp32"]

    one = one_node(args("one-node"), tmp)
    nodes = two_nodes(args("two-nodes"), tmp)
    return {"one": (tmp / "runs" / "one-node", one), "two": (tmp / "runs" / "two-nodes", nodes)}


def test_two_nodes_train_with_world_size_two(train_runs):
    run_dir, nodes = train_runs["two"]
    # The rank-0 process (on whichever launcher the rendezvous gave it) prints the plan: world 2, micro 16.
    plan = "\n".join(p.stderr + p.stdout for p in nodes)
    assert "world 2; global batch 32 = micro 16 x accumulation 1 x world 2" in plan
    ds = json.loads((run_dir / "deepspeed_config.json").read_text())
    assert ds["train_batch_size"] == 32 and ds["train_micro_batch_size_per_gpu"] == 16
    result = _last_json(nodes[0].stdout + nodes[1].stdout)
    assert result["val/num_samples"] == 30  # every validation sample exactly once across the two nodes


def test_two_nodes_train_matches_one_node(train_runs):
    from safetensors.torch import load_file

    (one_dir, one), (two_dir, nodes) = train_runs["one"], train_runs["two"]
    one_result = _last_json(one.stdout)
    two_result = _last_json(nodes[0].stdout + nodes[1].stdout)
    drop = {"run_dir", "export_dir"}
    assert {k: v for k, v in two_result.items() if k not in drop} == \
        {k: v for k, v in one_result.items() if k not in drop}
    losses = [(r["epoch"], r["train_epoch/loss"]) for r in epoch_records(one_dir)]
    assert len(losses) == 2 and [(r["epoch"], r["train_epoch/loss"]) for r in epoch_records(two_dir)] == losses
    a, b = load_file(str(one_dir / "export" / "model.safetensors")), load_file(str(two_dir / "export" /
                                                                                  "model.safetensors"))
    assert a.keys() == b.keys() and a
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, different[:5]


# -- describe -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def describe_runs(tmp_path_factory):
    """`describe` (tiny VLM, the profile's per-image sampling) over 30 samples in 6 shards, on one node x 2 and on 2
    nodes x 1."""
    tmp = tmp_path_factory.mktemp("multinode-describe")
    make_pairs(tmp / "in", n=30, per_shard=6, val_fraction=0.2, test_fraction=0.1)
    pix = 56 * 56

    def args(out: str) -> List[str]:
        return ["describe", "--vlm", "tiny", "--shards", str(tmp / "in"), "--out", str(tmp / out),
                "--config", "launch/profiles/cpu-demo.yaml", f"vlm.min_pixels={pix}", f"vlm.max_pixels={pix}",
                f"vlm.cache_dir={tmp / 'cache'}", "vlm.tiny_vision=random", "vlm.generation.max_new_tokens=8",
                "vlm.generation.batch_size=4", "tracking.backends=[stdout]", f"run.output_dir={tmp / 'runs'}"]

    one_node(args("one-node"), tmp)
    two_nodes(args("two-nodes"), tmp)
    return tmp


def _described(folder: Path) -> Dict[str, tuple]:
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet

    manifest = ShardSet.open(folder).manifest
    return {s["__key__"]: (split, entry["file"], s["txt"].decode())
            for split, info in manifest["splits"].items() for entry in info["shards"]
            for s in iter_shard_samples(folder / entry["file"])}


def test_two_nodes_describe_matches_one_node(describe_runs):
    one, two = describe_runs / "one-node", describe_runs / "two-nodes"
    described = _described(two)
    assert len(described) == 30 and described == _described(one)
    tars = sorted(p.name for p in one.glob("*.tar"))
    assert tars and tars == sorted(p.name for p in two.glob("*.tar"))
    assert [n for n in tars if (one / n).read_bytes() != (two / n).read_bytes()] == []
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["provenance"]["describe"]["world_size"] == 2
    assert not (two / ".progress").exists()

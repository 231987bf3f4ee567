"""`pipeline` under torchrun with 2 processes: the same command scales out. The rank-0 stages (synth, shards,
register) run once while the other rank waits, the distributed ones (VLM LoRA, describe, train, evaluate) on both
ranks, and the gathered evaluation covers every held-out patch exactly once."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.core.tracking.server import free_port

from support.fusion import ROOT
from support.processes import run_group
from support.report import stage_statuses

pytestmark = pytest.mark.slow

STAGES = ["synth", "shards", "finetune-vlm", "describe", "train", "evaluate", "register"]


def test_pipeline_on_two_processes_runs_each_stage_once_and_evaluates_every_patch_once(tmp_path):
    import mlflow

    from scale.test_multinode import PY, _env

    args = [
        "pipeline", "--synthetic", "--config", str(ROOT / "launch/profiles/cpu-demo.yaml"),
        f"run.output_dir={tmp_path / 'runs'}", f"data.synth_dir={tmp_path / 'src'}", f"data.shards={tmp_path / 'shards'}",
        "data.synth.n=60", "data.synth.n_slides=12", "data.synth.size=64", "data.build.image_size=32",
        "data.build.test_fraction=0.25", "data.build.val_fraction=0.25", "data.loader.num_workers=0",
        "data.loader.image_size=32", "vlm.max_steps=2", "vlm.generation.max_new_tokens=4", "train.epochs=2",
        "train.global_batch_size=8", "tracking.backends=[mlflow]",
    ]
    cmd = [PY, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "mmlnb_dist.cli", *args]
    proc = run_group(cmd, cwd=ROOT, env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    statuses = stage_statuses(proc.stdout)
    assert statuses == {s: "ran" for s in STAGES}, proc.stdout
    assert proc.stdout.count("models:/cpu-demo@champion") >= 1 and proc.stdout.count("| level |") == 1  # rank 0 only

    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    evaluation = json.loads((tmp_path / "runs" / "cpu-demo-pipeline" / "evaluate" / "evaluation.json").read_text())
    for split in ("test", "val"):  # gathered from both ranks: every patch of the split once
        assert evaluation["patch"][split]["num_samples"] == manifest["splits"][split]["num_samples"], split
    uri = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions("name='cpu-demo'")
    assert [str(v.version) for v in versions] == ["1"]  # registered once, by rank 0

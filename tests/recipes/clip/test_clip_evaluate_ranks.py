"""`evaluate` under torchrun (2 CPU processes, gloo): one evaluation, whatever the number of ranks. Every rank used
to take the per-split folder lock (the second failed with "in use by `evaluate`"), and every rank printed the
metrics, so `--json` stdout was two JSON documents."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from mmlnb_dist.core.tracking.server import free_port

from support.clip import ROOT, VOCAB, caption_shards, clip_config
from support.processes import run_group


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 1-epoch run of the tiny clip model on 48 pairs with a test split; its run folder."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    root = tmp_path_factory.mktemp("clip-eval-ranks")
    shards = caption_shards(root, n=48, size=32, test_fraction=0.25)
    result = run(recipe_class("clip"), clip_config(shards, root / "runs", "train.epochs=1", name="r1"))
    return Path(result["run_dir"])


@pytest.mark.parametrize("backends", ["[stdout]", "[mlflow]"])
def test_two_process_evaluate_prints_one_json_document(trained, backends):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "MLFLOW_REGISTRY_URI"):
        env.pop(key, None)
    uri = f"sqlite:///{(trained.parent / 'mlflow.db').resolve()}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "mmlnb_dist.cli", "evaluate", "--export", str(trained / "export"),
           "--split", "test", "--json", f"tracking.backends={backends}", f"tracking.uri={uri}"]
    proc = run_group(cmd, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads(proc.stdout)  # exactly one document: a second would make this raise
    manifest = json.loads((trained.parent.parent / "shards" / "manifest.json").read_text())
    assert metrics["num_samples"] == manifest["splits"]["test"]["num_samples"], metrics  # each sample once
    assert len(metrics["per_label_f1"]) == len(VOCAB)

"""Fusion's finish writes `metrics.json` (what `tracking import` reads as "the run finished") through
`core.recipe.write_result`, which writes it whole or not at all (tests/core/test_write_result.py); it wrote it
with a plain `write_text`, and a kill mid-write left a torn file. The run's collaborators (DeepSpeed, the export,
figures) are stand-ins."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv
from support.result_write import finish_writes_through_write_result, stand_in_finish_parts
from mmlnb_dist.recipes.fusion import finish as finish_module
from mmlnb_dist.recipes.fusion.config import CurriculumConfig
from mmlnb_dist.recipes.fusion.metrics import compute_metrics
from mmlnb_dist.recipes.fusion.steps import Predictions

CLASSES = ["UD", "PD", "D"]


@pytest.fixture
def stand_ins(monkeypatch):
    stand_in_finish_parts(finish_module, monkeypatch)
    monkeypatch.setattr(finish_module, "what_trained", lambda recipe: {"descriptions": {"describe": None}})


def _recipe(run_dir: Path):
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    preds = Predictions(torch.eye(3)[targets] * 0.8 + 0.2 / 3, targets, torch.full((6,), 0.4))
    cfg = SimpleNamespace(distributed=SimpleNamespace(rank0_wait_s=None), data=SimpleNamespace(
        shards="/shards", loader=SimpleNamespace(image_size=32)), tracking=SimpleNamespace(register_name=None),
        fusion=SimpleNamespace(model=SimpleNamespace(mode="prmf"), curriculum=CurriculumConfig()))
    return SimpleNamespace(
        cfg=cfg, env=DistEnv(), run_dir=run_dir, best=None, has_test=False, classes=CLASSES, global_step=3,
        history=[], checkpoints=SimpleNamespace(best=None),
        engine=SimpleNamespace(engine=SimpleNamespace(optimizer=None)),
        phases=SimpleNamespace(cache_loads={"hits": 0, "misses": 0}), model=SimpleNamespace(image_encoder=None),
        evaluate=lambda split: (compute_metrics(preds.probs, preds.targets, CLASSES, split=split), preds),
        logger=SimpleNamespace(wants_figures=False, log_metrics=lambda m, step: None, log_artifact=lambda *a: None))


def test_the_stand_in_finish_writes_its_result(tmp_path, stand_ins):
    result = finish_module.finish(_recipe(tmp_path))
    assert json.loads((tmp_path / "metrics.json").read_text())["run_dir"] == result["run_dir"]


def test_the_finish_writes_its_result_through_write_result(tmp_path, stand_ins, monkeypatch):
    finish_writes_through_write_result(finish_module, _recipe(tmp_path), monkeypatch)

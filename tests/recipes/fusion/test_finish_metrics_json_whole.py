"""Fusion's finish writes `metrics.json` (what `tracking import` reads as "the run finished") through
`core.recipe.write_result`, which writes it whole or not at all (tests/core/test_write_result.py); it wrote it
with a plain `write_text`, and a kill mid-write left a torn file. The run's collaborators (DeepSpeed, the export,
figures) are stand-ins."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.recipes.fusion import finish as finish_module
from mmlnb_dist.recipes.fusion.config import CurriculumConfig
from mmlnb_dist.recipes.fusion.metrics import compute_metrics
from mmlnb_dist.recipes.fusion.steps import Predictions

CLASSES = ["UD", "PD", "D"]


@pytest.fixture
def stand_ins(monkeypatch):
    monkeypatch.setattr(finish_module, "full_fp32_state_dict", lambda model: {})
    monkeypatch.setattr(finish_module, "rank0_alone", lambda env, wait: contextlib.nullcontext())
    monkeypatch.setattr(finish_module, "export_model", lambda *a, **k: None)
    monkeypatch.setattr(finish_module, "record_export", lambda *a: None)
    monkeypatch.setattr(finish_module, "what_trained", lambda recipe: {"descriptions": {"describe": None}})


def _recipe(run_dir: Path):
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    preds = Predictions(torch.eye(3)[targets] * 0.8 + 0.2 / 3, targets, torch.full((6,), 0.4))
    cfg = SimpleNamespace(distributed=SimpleNamespace(rank0_wait_s=None), data=SimpleNamespace(
        shards="/shards", loader=SimpleNamespace(image_size=32)), tracking=SimpleNamespace(register_name=None),
        fusion=SimpleNamespace(model=SimpleNamespace(mode="prmf"), curriculum=CurriculumConfig()))
    return SimpleNamespace(
        cfg=cfg, env=DistEnv(), run_dir=run_dir, best=None, has_test=False, classes=CLASSES, global_step=3,
        history=[], checkpoints=SimpleNamespace(best=None), engine=SimpleNamespace(engine="engine"),
        phases=SimpleNamespace(cache_loads={"hits": 0, "misses": 0}), model=SimpleNamespace(image_encoder=None),
        evaluate=lambda split: (compute_metrics(preds.probs, preds.targets, CLASSES, split=split), preds),
        logger=SimpleNamespace(wants_figures=False, log_metrics=lambda m, step: None, log_artifact=lambda *a: None))


def test_the_stand_in_finish_writes_its_result(tmp_path, stand_ins):
    result = finish_module.finish(_recipe(tmp_path))
    assert json.loads((tmp_path / "metrics.json").read_text())["run_dir"] == result["run_dir"]


def test_the_finish_writes_its_result_through_write_result(tmp_path, stand_ins, monkeypatch):
    from mmlnb_dist.core import recipe as core_recipe

    written = []
    monkeypatch.setattr(finish_module, "write_result",
                        lambda run_dir, result: written.append(result) or core_recipe.write_result(run_dir, result))
    result = finish_module.finish(_recipe(tmp_path))
    assert len(written) == 1 and written[0]["run_dir"] == result["run_dir"]

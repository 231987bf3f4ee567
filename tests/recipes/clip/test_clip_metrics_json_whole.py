"""CLIP's finish writes `metrics.json` (what `tracking import` reads as "the run finished") through
`core.recipe.write_result`, which writes it whole or not at all (tests/core/test_write_result.py); it wrote it
with a plain `write_text`, and a kill mid-write left a torn file. The run's collaborators (DeepSpeed, the export,
figures) are stand-ins."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.recipes.clip import export as finish_module

CLASSES = ["red", "fat"]


def _recipe(run_dir: Path):
    metrics = {"loss": 0.5, "micro_auroc": 0.75, "labels_without_positives": [], "labels_without_negatives": [],
               "per_label_f1": [0.5, 0.25]}
    cfg = SimpleNamespace(train=SimpleNamespace(epochs=2), distributed=SimpleNamespace(rank0_wait_s=None),
                          data=SimpleNamespace(shards="/shards", loader=SimpleNamespace(image_size=32)),
                          clip=SimpleNamespace(model=None, top_k=1, pos_weight=None))
    return SimpleNamespace(
        cfg=cfg, env=DistEnv(), run_dir=run_dir, best=None, has_test=False, classes=CLASSES, global_step=4,
        engine=SimpleNamespace(engine="engine"), checkpoints=SimpleNamespace(best=None), model=None,
        evaluate=lambda split, log_data: dict(metrics),
        logger=SimpleNamespace(log_metrics=lambda m, step: None, log_artifact=lambda *a: None))


@pytest.fixture
def stand_ins(monkeypatch):
    monkeypatch.setattr(finish_module, "full_fp32_state_dict", lambda model: {})
    monkeypatch.setattr(finish_module, "rank0_alone", lambda env, wait: contextlib.nullcontext())
    monkeypatch.setattr(finish_module, "export_model", lambda *a, **k: None)
    monkeypatch.setattr(finish_module, "record_export", lambda *a: None)
    monkeypatch.setattr(finish_module, "publish_run", lambda recipe, result, export_dir: {})


def test_the_stand_in_finish_writes_its_result(tmp_path, stand_ins):
    result = finish_module.finish(_recipe(tmp_path))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["val/micro_auroc"] == 0.75 and written["run_dir"] == result["run_dir"]


def test_the_finish_writes_its_result_through_write_result(tmp_path, stand_ins, monkeypatch):
    from mmlnb_dist.core import recipe as core_recipe

    written = []
    monkeypatch.setattr(finish_module, "write_result",
                        lambda run_dir, result: written.append(result) or core_recipe.write_result(run_dir, result))
    result = finish_module.finish(_recipe(tmp_path))
    assert len(written) == 1 and written[0]["run_dir"] == result["run_dir"]

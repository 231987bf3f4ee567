"""CLIP's finish writes `metrics.json` (what `tracking import` reads as "the run finished") through
`core.recipe.write_result`, which writes it whole or not at all (tests/core/test_write_result.py); it wrote it
with a plain `write_text`, and a kill mid-write left a torn file. The run's collaborators (DeepSpeed, the export,
figures) are stand-ins."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmlnb_dist.core.distributed import DistEnv
from support.result_write import finish_writes_through_write_result, stand_in_finish_parts
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
        engine=SimpleNamespace(engine=SimpleNamespace(optimizer=None)), checkpoints=SimpleNamespace(best=None),
        model=None,
        evaluate=lambda split, log_data: dict(metrics),
        logger=SimpleNamespace(log_metrics=lambda m, step: None, log_artifact=lambda *a: None))


@pytest.fixture
def stand_ins(monkeypatch):
    stand_in_finish_parts(finish_module, monkeypatch)
    monkeypatch.setattr(finish_module, "publish_run", lambda recipe, result, export_dir: {})


def test_the_stand_in_finish_writes_its_result(tmp_path, stand_ins):
    result = finish_module.finish(_recipe(tmp_path))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["val/micro_auroc"] == 0.75 and written["run_dir"] == result["run_dir"]


def test_the_finish_writes_its_result_through_write_result(tmp_path, stand_ins, monkeypatch):
    finish_writes_through_write_result(finish_module, _recipe(tmp_path), monkeypatch)


def test_metrics_json_names_the_labels_of_per_label_f1(tmp_path, stand_ins):
    """`val/per_label_f1` is a bare list: metrics.json must say which label each entry is (the run's label order),
    or a reader pairs the F1s with whatever order it assumes (another shard set's, a sorted vocabulary)."""
    finish_module.finish(_recipe(tmp_path))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["classes"] == CLASSES
    assert dict(zip(written["classes"], written["val/per_label_f1"])) == {"red": 0.5, "fat": 0.25}

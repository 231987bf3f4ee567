"""`metrics.json` is what `tracking import` (and a pipeline) reads as "the run finished". CLIP's finish wrote it with
a plain `write_text`: a process killed half-way through the write left a torn file where a finished run's result
should be. It is now written through a temporary file and a rename: a kill leaves no result (or the old one),
never half of one. The run's collaborators (DeepSpeed, the export, figures) are stand-ins: only the write is real."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmlnb_dist.core.distributed import DistEnv
from support.result_write import Killed, is_result, kill_result_writes
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


def test_a_kill_during_the_write_leaves_no_torn_result(tmp_path, stand_ins, monkeypatch):
    kill_result_writes(monkeypatch)
    with pytest.raises(Killed):
        finish_module.finish(_recipe(tmp_path))
    assert not (tmp_path / "metrics.json").exists(), (tmp_path / "metrics.json").read_text()
    assert not [p.name for p in tmp_path.iterdir() if is_result(p)]  # nor a temporary file left behind


def test_a_kill_during_the_rewrite_keeps_the_earlier_result_whole(tmp_path, stand_ins, monkeypatch):
    (tmp_path / "metrics.json").write_text('{"val/micro_auroc": 0.5}')  # a resumed run's earlier result
    kill_result_writes(monkeypatch)
    with pytest.raises(Killed):
        finish_module.finish(_recipe(tmp_path))
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"val/micro_auroc": 0.5}

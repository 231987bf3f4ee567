"""`metrics.json` is what `tracking import` (and a pipeline) reads as "the run finished". Fusion's finish wrote it
with a plain `write_text`: a process killed half-way through the write left a torn file where a finished run's
result should be. It is now written through a temporary file and a rename: a kill leaves no result (or the old
one), never half of one. The run's collaborators (DeepSpeed, the export, figures) are stand-ins."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv
from support.result_write import Killed, is_result, kill_result_writes
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


def test_a_kill_during_the_write_leaves_no_torn_result(tmp_path, stand_ins, monkeypatch):
    kill_result_writes(monkeypatch)
    with pytest.raises(Killed):
        finish_module.finish(_recipe(tmp_path))
    assert not (tmp_path / "metrics.json").exists(), (tmp_path / "metrics.json").read_text()
    assert not [p.name for p in tmp_path.iterdir() if is_result(p)]  # nor a temporary file left behind


def test_a_kill_during_the_rewrite_keeps_the_earlier_result_whole(tmp_path, stand_ins, monkeypatch):
    (tmp_path / "metrics.json").write_text('{"val/accuracy": 0.5}')  # a resumed run's earlier result
    kill_result_writes(monkeypatch)
    with pytest.raises(Killed):
        finish_module.finish(_recipe(tmp_path))
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"val/accuracy": 0.5}

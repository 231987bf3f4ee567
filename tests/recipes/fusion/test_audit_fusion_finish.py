"""Mutation audit of `recipes.fusion.finish`, the end of a run, on a stand-in recipe (its collaborators that touch
DeepSpeed, the export and the tracking server replaced by recorders): the final metrics come from the best
checkpoint (the one this process chose, else the one its checkpoints record), with its caches rebuilt, on val and
on test only when the shard set has one; `metrics.json` holds what the call returns; figures only where asked."""
from __future__ import annotations

import contextlib
import json
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
def calls(monkeypatch):
    got = {"export": [], "figures": []}
    monkeypatch.setattr(finish_module, "full_fp32_state_dict", lambda model, optimizer: {"w": torch.zeros(1)})
    monkeypatch.setattr(finish_module, "rank0_alone", lambda env, wait: contextlib.nullcontext())
    monkeypatch.setattr(finish_module, "export_model", lambda *a, **k: got["export"].append((a, k)))
    monkeypatch.setattr(finish_module, "record_export", lambda *a: None)
    monkeypatch.setattr(finish_module, "what_trained", lambda recipe: {"descriptions": {"describe": None}})
    monkeypatch.setattr(finish_module, "log_evaluation_figures",
                        lambda logger, y, p, classes, alpha, prefix, curriculum: got["figures"].append(
                            (prefix, alpha is not None, curriculum["lambdas"])))
    return got


def _preds(split):
    """Distinct predictions per split (val mostly right, test mostly wrong), so each split's metrics are its own."""
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    right = torch.eye(3)[targets] * 0.8 + 0.2 / 3
    probs = right if split == "val" else right[:, [1, 2, 0]]
    return Predictions(probs, targets, torch.full((6,), 0.4))


def _recipe(tmp_path, *, best=None, ckpt_best=None, has_test=False, figures=True):
    log = {"evaluated": [], "loaded": [], "entered": [], "metrics": []}

    def evaluate(split):
        log["evaluated"].append(split)
        preds = _preds(split)
        return compute_metrics(preds.probs, preds.targets, CLASSES, split=split), preds

    cfg = SimpleNamespace(distributed=SimpleNamespace(rank0_wait_s=None), data=SimpleNamespace(
        shards="/shards", loader=SimpleNamespace(image_size=32)), tracking=SimpleNamespace(register_name=None),
        fusion=SimpleNamespace(model=SimpleNamespace(mode="prmf"), curriculum=CurriculumConfig()))
    recipe = SimpleNamespace(
        cfg=cfg, env=DistEnv(), run_dir=tmp_path, best=best, has_test=has_test, classes=CLASSES, global_step=12,
        history=[{"epoch": 0, "train/lambda": 0.3}, {"epoch": 1, "train/lambda": 0.44}],
        checkpoints=SimpleNamespace(best=ckpt_best, load=lambda engine, tag, module_only: log["loaded"].append(
            (tag, module_only))),
        engine=SimpleNamespace(engine=SimpleNamespace(optimizer=None)),
        phases=SimpleNamespace(enter=lambda epoch, force, what, evaluate_only=False: log["entered"].append(
            (epoch, force, evaluate_only)),
                               cache_loads={"hits": 3, "misses": 1}),
        evaluate=evaluate, model=SimpleNamespace(image_encoder=None),
        logger=SimpleNamespace(wants_figures=figures, log_metrics=lambda m, step: log["metrics"].append((step, m)),
                               log_artifact=lambda *a: None, set_tags=lambda tags: None, run_id="r", online=False),
    )
    return recipe, log


def test_the_final_metrics_come_from_the_best_checkpoint_this_run_chose(tmp_path, calls):
    best = {"tag": "epoch-0001", "epoch": 1, "metric": "balanced_accuracy", "value": 0.5}
    recipe, log = _recipe(tmp_path, best=best, ckpt_best={"tag": "epoch-0000", "epoch": 0, "metric": "loss",
                                                           "value": 1.0})
    result = finish_module.finish(recipe)
    # the best phase is re-entered for evaluation only: no pass over the train split to refill its caches
    assert log["loaded"] == [("epoch-0001", True)] and log["entered"] == [(1, True, True)]
    assert (result["best_epoch"], result["best_metric"], result["best_value"]) == (1, "balanced_accuracy", 0.5)
    assert log["evaluated"] == ["val"] and not any(k.startswith("test/") for k in result)
    assert result["val/accuracy"] == pytest.approx(1.0)
    assert (result["cache/hits"], result["cache/misses"]) == (3, 1)
    assert result["export_dir"] == str(tmp_path / "export")
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == {k: v for k, v in result.items() if k != "export_dir"}
    assert calls["export"][0][1]["extra"]["best"] == best
    logged = [m for step, m in log["metrics"] if step == 12]
    assert logged and logged[0]["best/val/accuracy"] == pytest.approx(1.0)
    assert calls["figures"] == [("val", True, [0.3, 0.44])]


def test_a_resumed_run_takes_the_best_checkpoint_its_checkpoints_record_and_evaluates_test_too(tmp_path, calls):
    ckpt_best = {"tag": "epoch-0000", "epoch": 0, "metric": "loss", "value": 1.0}
    recipe, log = _recipe(tmp_path, ckpt_best=ckpt_best, has_test=True, figures=False)
    result = finish_module.finish(recipe)
    assert log["loaded"] == [("epoch-0000", True)] and result["best_epoch"] == 0
    assert log["evaluated"] == ["val", "test"]
    assert result["val/accuracy"] == pytest.approx(1.0) and result["test/accuracy"] == pytest.approx(0.0)
    assert result["test/confusion_matrix"] != result["val/confusion_matrix"]
    assert calls["figures"] == []  # a logger that keeps no figures is not drawn for


def test_a_run_without_a_best_checkpoint_evaluates_its_last_weights(tmp_path, calls):
    recipe, log = _recipe(tmp_path)
    result = finish_module.finish(recipe)
    assert log["loaded"] == [] and log["entered"] == [] and "best_epoch" not in result
    assert log["evaluated"] == ["val"]


def test_metrics_json_is_strict_json_when_a_metric_is_undefined(tmp_path, calls):
    """An AUROC undefined on a split (NaN) is written as null: Python's bare `NaN` is no JSON, and jq, JavaScript
    or Spark refused the file; the returned result keeps the float."""
    recipe, _ = _recipe(tmp_path)
    evaluate = recipe.evaluate

    def with_undefined_auroc(split):
        metrics, preds = evaluate(split)
        return {**metrics, "auroc": float("nan")}, preds

    recipe.evaluate = with_undefined_auroc
    result = finish_module.finish(recipe)

    def refuse(constant):
        raise AssertionError(f"bare {constant} in metrics.json")

    on_disk = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    assert on_disk["val/auroc"] is None and result["val/auroc"] != result["val/auroc"]
    assert on_disk["val/accuracy"] == pytest.approx(result["val/accuracy"])

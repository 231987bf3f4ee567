"""Audit of `mmlnb-dist evaluate` for the CLIP recipe (recipes/clip/evaluate.py) on an export written without a run:
the metrics equal scikit-learn's on the export's own logits of the raw validation samples (every sample once, no
augmentation even when the config trains with it, the export's top-k rather than the config's, the loss weighted
by `clip.pos_weight`); an export whose labels are in another order than the shards' is scored by label name, one
with other labels is refused, as is `--checkpoint`. Also the recipe's check against the same shard set:
`clip.top_k` up to the label count, one `clip.pos_weight` per label."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from support.clip import VOCAB, caption_shards, clip_config
from support.clip_registry import raw_split
from support.served import normalised_pixels

WEIGHTS = [1.0, 3.0, 0.5, 2.0, 4.0, 1.5]


def _export(model_cfg, classes, folder, top_k, extra=None):
    from mmlnb_dist.recipes.clip.export import export_model
    from mmlnb_dist.recipes.clip.model import build_model

    torch.manual_seed(0)
    model = build_model(model_cfg, len(classes), 32, classes=classes).eval()
    with torch.no_grad():  # spread the logits: an augmented image or a wrong k shows in the metrics
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model, export_model({k: v.detach().clone() for k, v in model.state_dict().items()}, model, model_cfg,
                               classes, folder, image_size=32, top_k=top_k, extra=extra or {})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip-audit-evaluate")
    shards = caption_shards(root, n=24, size=32)
    # the config trains with augmentation, k=3 and per-label weights; the export was made with k=2
    cfg = clip_config(shards, root / "runs", "data.loader.augment=true", "clip.top_k=3",
                      f"clip.pos_weight={WEIGHTS}", "train.eval_batch_size=4")
    model, export_dir = _export(cfg.clip.model, VOCAB, root / "export", top_k=2)
    return cfg, shards, model, export_dir, root


def test_evaluate_equals_scikit_learn_on_the_exports_logits_of_the_raw_split(setup):
    from sklearn.metrics import f1_score, hamming_loss, roc_auc_score

    from mmlnb_dist.recipes.clip.evaluate import evaluate_command

    cfg, shards, model, export_dir, _ = setup
    metrics = json.loads(evaluate_command(cfg, export=str(export_dir), checkpoint=None, tag=None, split="val",
                                          as_json=True))
    samples = raw_split(shards, "val")
    pixels = normalised_pixels([s["png"] for s in samples], model.image_mean, model.image_std)
    with torch.no_grad():
        logits = model(**model.inputs(pixels, [s["text"] for s in samples], torch.device("cpu"))).double()
    y = np.array([[c in s["labels"] for c in VOCAB] for s in samples], dtype=np.float64)
    top2 = np.zeros_like(y)
    np.put_along_axis(top2, np.argsort(-logits.numpy(), axis=1)[:, :2], 1, axis=1)

    assert metrics["num_samples"] == len(samples) == 6 and metrics["top_k"] == 2
    assert metrics["micro_f1"] == pytest.approx(f1_score(y, top2, average="micro"), abs=1e-5)
    assert metrics["hamming_loss"] == pytest.approx(hamming_loss(y, top2), abs=1e-5)
    assert metrics["micro_auroc"] == pytest.approx(roc_auc_score(y.ravel(), logits.numpy().ravel()), abs=1e-5)
    p, t, w = logits.sigmoid(), torch.tensor(y), torch.tensor(WEIGHTS, dtype=torch.float64)
    by_hand = -(w * t * p.log() + (1 - t) * (1 - p).log()).mean()
    assert metrics["loss"] == pytest.approx(float(by_hand), rel=1e-4)


@pytest.mark.parametrize("run_weights, config_weights", [(WEIGHTS, None), (None, WEIGHTS)])
def test_the_loss_is_weighted_as_the_run_was_whatever_the_config_says(setup, run_weights, config_weights):
    """`evaluate --config clip-multilabel --export runs/x/export`: the shipped config has no `clip.pos_weight`, the
    run had one (or the other way round); the loss printed is the run's, with the weights its export records."""
    from mmlnb_dist.recipes.clip.evaluate import evaluate_export

    cfg, shards, _, _, root = setup
    extra = {"pos_weight": run_weights}
    model, export_dir = _export(cfg.clip.model, VOCAB, root / f"export-{run_weights is None}", top_k=2, extra=extra)
    weights = f"clip.pos_weight={config_weights}" if config_weights else "clip.pos_weight=null"
    metrics, _ = evaluate_export(clip_config(shards, root / "other", weights, "train.eval_batch_size=4"), export_dir)
    samples = raw_split(shards, "val")
    pixels = normalised_pixels([s["png"] for s in samples], model.image_mean, model.image_std)
    with torch.no_grad():
        logits = model(**model.inputs(pixels, [s["text"] for s in samples], torch.device("cpu"))).double()
    y = torch.tensor([[c in s["labels"] for c in VOCAB] for s in samples], dtype=torch.float64)
    w = torch.tensor(run_weights, dtype=torch.float64) if run_weights else None
    by_hand = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=w)
    assert metrics["loss"] == pytest.approx(float(by_hand), rel=1e-4)


def test_an_export_with_the_labels_in_another_order_is_scored_by_label_name(setup):
    """A model whose label i is another name than the shards' label i (the same label set): each logit column is
    scored against the shards' label of the same name (it used to be refused), per-label values in the model's
    order, equal to scikit-learn's on the export's own logits."""
    from sklearn.metrics import f1_score, roc_auc_score

    from mmlnb_dist.recipes.clip.evaluate import evaluate_export

    cfg, shards, _, _, root = setup
    order = VOCAB[::-1]
    model, export_dir = _export(cfg.clip.model, order, root / "export-reversed", top_k=2)
    metrics, classes = evaluate_export(cfg, export_dir, "val")
    assert classes == order
    samples = raw_split(shards, "val")
    pixels = normalised_pixels([s["png"] for s in samples], model.image_mean, model.image_std)
    with torch.no_grad():
        logits = model(**model.inputs(pixels, [s["text"] for s in samples], torch.device("cpu"))).double().numpy()
    y = np.array([[c in s["labels"] for c in order] for s in samples], dtype=np.float64)
    top2 = np.zeros_like(y)
    np.put_along_axis(top2, np.argsort(-logits, axis=1)[:, :2], 1, axis=1)
    per_label = f1_score(y, top2, average=None, zero_division=0)
    for i, value in enumerate(metrics["per_label_f1"]):
        assert (value is None) == (y[:, i].sum() == 0)
        if value is not None:
            assert value == pytest.approx(per_label[i], abs=1e-5), order[i]
    assert metrics["micro_auroc"] == pytest.approx(roc_auc_score(y.ravel(), logits.ravel()), abs=1e-5)


def test_an_export_with_other_labels_is_refused_naming_both_orders(setup):
    """Another label set cannot be scored (a shard label the model has no column for): refused, naming both
    orders and the labels that differ."""
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.recipes.clip.evaluate import evaluate_export

    cfg, _, _, _, root = setup
    other = VOCAB[:-1] + ["stroma"]
    _, export_dir = _export(cfg.clip.model, other, root / "export-other", top_k=2)
    with pytest.raises(UserError) as err:
        evaluate_export(cfg, export_dir, "val")
    message = str(err.value)
    assert str(other) in message and str(VOCAB) in message, message
    assert "stroma" in message and VOCAB[-1] in message and "data.shards" in message, message


def test_evaluate_refuses_a_checkpoint_or_no_export(setup):
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.recipes.clip.evaluate import evaluate_command

    cfg, _, _, export_dir, _ = setup
    for export, checkpoint in ((str(export_dir), "runs/x/checkpoints"), (None, None)):
        with pytest.raises(UserError, match="--export"):
            evaluate_command(cfg, export=export, checkpoint=checkpoint, tag=None, split="val", as_json=True)


@pytest.mark.parametrize("overrides, refused", [
    (["clip.top_k=6"], None),  # k equal to the number of labels: every label predicted, allowed
    (["clip.top_k=7"], "clip.top_k"),
    (["clip.pos_weight=[1, 1, 1, 1, 1]"], "clip.pos_weight"),
])
def test_the_check_against_the_shard_set_allows_k_up_to_the_label_count(setup, overrides, refused):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    _, shards, _, _, root = setup
    cfg = clip_config(shards, root / "check", f"clip.pos_weight={WEIGHTS}", *overrides)
    if refused is None:
        ClipRecipe.check(cfg, DistEnv.from_environment())
    else:
        with pytest.raises(ConfigError, match=refused.replace(".", r"\.")):
            ClipRecipe.check(cfg, DistEnv.from_environment())

"""Mutation audit of the fusion recipe's training core, pinned on small pieces run for real (no shards, no engine):
the step curriculum's boundaries on a ramp that is not a whole number of steps, the fused head and the optimizer's
parameter groups, what `train_epoch` feeds the loss and reports, evaluation and cache filling leaving the model as
they found it, the frozen-feature table and its disk form, and the `trained` record of a run."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.recipes.fusion.config import CurriculumConfig, FusionModelConfig
from mmlnb_dist.recipes.fusion.curriculum import CurriculumState, curriculum_lambda, phase_index
from mmlnb_dist.recipes.fusion.features import CachedKeys, FeatureCache, FeatureTable
from mmlnb_dist.recipes.fusion.model import FusionClassifier

from support.engines import AdamEngine, EpochLoader
from support.fusion_stand_ins import DIM_I, DIM_T, feature_batches, stand_in_fusion

CLASSES = ["UD", "PD", "D"]


def _model(mode: str = "prmf", dropout: float = 0.3, seed: int = 0) -> FusionClassifier:
    return stand_in_fusion(mode, dropout, seed, may_run=False)


# -- the curriculum schedule ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ramp_end, levels", [
    (95, [0.30, 0.44, 0.58, 0.72, 0.86]),  # 45 epochs every 10: five levels, then the jump to `end` at 95
    (85, [0.30, 0.475, 0.65, 0.825]),       # 35 epochs every 10: four levels
])
def test_step_schedule_reaches_end_exactly_at_ramp_end_when_the_ramp_is_not_whole_steps(ramp_end, levels):
    """A step ramp whose length is not a multiple of `step_every` still holds each level for `step_every` epochs
    and reaches `end` at `ramp_end`, not before (a floor instead of a ceil reached 1.0 early) nor after (a
    `>` boundary left the last level in force at `ramp_end`)."""
    cfg = CurriculumConfig(schedule="step", start=0.3, end=1.0, ramp_start=50, ramp_end=ramp_end, step_every=10)
    got = [curriculum_lambda(cfg, e) for e in range(50, ramp_end)]
    want = [levels[(e - 50) // 10] for e in range(50, ramp_end)]
    assert got == pytest.approx(want)
    assert curriculum_lambda(cfg, ramp_end - 1) < 1.0
    assert curriculum_lambda(cfg, ramp_end) == 1.0 and curriculum_lambda(cfg, ramp_end + 7) == 1.0
    assert curriculum_lambda(cfg, 49) == pytest.approx(0.3)


# -- the model -----------------------------------------------------------------------------------------------


def test_fused_head_is_relu_dropout_linear_and_the_image_head_reads_the_image_features():
    """logits = Linear(Dropout_p(ReLU(F))) with p = fusion.model.dropout, image_logits = Linear(I) on the image
    features themselves (not on the fused ones), alpha the PRMF text weight of each sample: checked against a hand
    computation in eval mode, and the configured dropout rate is the one that drops in training."""
    model = _model(dropout=0.45).eval()
    torch.manual_seed(1)
    image, text = torch.randn(7, DIM_I), torch.randn(7, DIM_T)
    out = model(image_features=image, text_features=text)
    fused, alpha = model.fusion(image, text)
    lin = model.head[-1]
    torch.testing.assert_close(out["logits"], torch.relu(fused) @ lin.weight.T + lin.bias)
    torch.testing.assert_close(out["image_logits"], image @ model.image_head.weight.T + model.image_head.bias)
    torch.testing.assert_close(out["alpha"], alpha)
    assert out["alpha"].shape == (7, 1)
    drops = [m for m in model.head if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.45]


@pytest.mark.parametrize("mode", ["prmf", "fixed_alpha", "sum", "concat"])
def test_param_groups_hold_every_parameter_exactly_once(mode):
    """The optimizer is built from `param_groups`: a parameter left out never trains (the image-only head that
    the curriculum's (1 - lambda) term is meant to train, say), one given twice is stepped twice."""
    model = _model(mode)
    groups = model.param_groups()
    assert [g["name"] for g in groups] == ["image_encoder", "text_encoder", "heads"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    heads = {id(p) for p in groups[-1]["params"]}
    assert {id(p) for p in model.image_head.parameters()} <= heads


def test_a_classifier_needs_two_classes():
    """A shard set of one class cannot train a classifier (its loss is 0 from the start): refused when built."""
    from mmlnb_dist.recipes.fusion.model import build_classifier

    with pytest.raises(ValueError, match="at least 2 classes"):
        build_classifier(FusionModelConfig(), 1)

# -- one training epoch --------------------------------------------------------------------------------------


def _recipe(cur: CurriculumConfig, batches, tmp_path):
    model = _model()
    engine = AdamEngine(model, record=True)
    return SimpleNamespace(
        cfg=SimpleNamespace(run=SimpleNamespace(seed=3),
                            fusion=SimpleNamespace(curriculum=cur, record_train_keys=False),
                            train=SimpleNamespace(checkpoint_every_steps=0, log_every=1000)),
        env=DistEnv(), engine=SimpleNamespace(engine=engine, lr=lambda: 1e-3), model=model,
        plan=SimpleNamespace(accumulation=1), steps_per_epoch=len(batches), train_loader=EpochLoader(batches),
        phases=SimpleNamespace(enter=lambda epoch: phase_index(cur, epoch), caches={"image": None, "text": None},
                               table=None),
        state=CurriculumState(), global_step=0, mid_epoch=None, run_dir=tmp_path, autocast=contextlib.nullcontext,
        watch=SimpleNamespace(see=lambda v: None, step_done=lambda *a: None),
        stop=SimpleNamespace(requested=False, stop_if_asked=lambda *a: None),
        logger=SimpleNamespace(log_metrics=lambda *a, **k: None),
    )


CUR = CurriculumConfig(schedule="step", start=0.3, end=1.0, ramp_start=1, ramp_end=4, step_every=1,
                       phases=[{"start_epoch": 0, "train_text_encoder": False}, {"start_epoch": 2}])


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_train_epoch_steps_on_the_curriculum_loss_of_its_own_epoch_and_reports_it(epoch, tmp_path):
    """Every step's loss is lambda(e) * CE(fused) + (1 - lambda(e)) * CE(image head) with the lambda of the epoch
    being trained (the authors' defect 2: a counter stuck at epoch 0 keeps lambda at `start`); the epoch reports
    that lambda, its phase, the sample-weighted mean loss and the mean PRMF alpha over every sample, and the
    curriculum state (saved in checkpoints) says where training stands."""
    from mmlnb_dist.recipes.fusion.loop import train_epoch

    batches = feature_batches()
    recipe = _recipe(CUR, batches, tmp_path)
    stats = train_epoch(recipe, epoch)
    lam = curriculum_lambda(CUR, epoch)
    assert stats["train/lambda"] == pytest.approx(lam)
    calls = recipe.engine.engine.calls
    assert len(calls) == len(batches) and recipe.global_step == len(batches)
    for call, batch in zip(calls, batches):
        out, y = call["out"], batch["label"]
        want = lam * F.cross_entropy(out["logits"], y) + (1 - lam) * F.cross_entropy(out["image_logits"], y)
        assert call["loss"] == pytest.approx(float(want), rel=1e-5)
    sizes = [len(b["key"]) for b in batches]
    assert stats["train/loss"] == pytest.approx(sum(c["loss"] * n for c, n in zip(calls, sizes)) / sum(sizes))
    alphas = torch.cat([c["out"]["alpha"].flatten() for c in calls])
    assert stats["train/alpha_mean"] == pytest.approx(float(alphas.mean()), rel=1e-6)
    assert stats["train/phase"] == phase_index(CUR, epoch)
    assert recipe.state.state_dict() == {"epoch": epoch, "phase": phase_index(CUR, epoch)}


def test_each_epoch_has_its_own_seed_and_replays_it_exactly(tmp_path):
    """The loop reseeds per epoch from (run.seed, epoch, rank): a resumed run replays an epoch's dropout draws
    exactly, and two epochs do not repeat each other's draws (a seed without the epoch gave every epoch the same
    dropout masks)."""
    from mmlnb_dist.recipes.fusion.loop import train_epoch

    def draws(epoch):
        recipe = _recipe(CUR, feature_batches(), tmp_path)
        train_epoch(recipe, epoch)
        return [c["draw"] for c in recipe.engine.engine.calls]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)


def test_an_epoch_trains_whole_optimizer_steps_only(tmp_path):
    """With gradient accumulation 2, an epoch of 3 micro batches trains 2 of them (one whole optimizer step): a
    left-over micro batch would carry its gradient into the next epoch's first step."""
    from mmlnb_dist.recipes.fusion.loop import train_epoch

    recipe = _recipe(CUR, feature_batches(), tmp_path)
    recipe.plan.accumulation, recipe.steps_per_epoch = 2, 1
    train_epoch(recipe, 0)
    assert len(recipe.engine.engine.calls) == 2 and recipe.global_step == 1

# -- evaluation and cache filling ------------------------------------------------------------------------------


def test_evaluate_loss_is_the_mean_over_samples_and_the_model_goes_back_to_training():
    """The split's loss is the mean cross-entropy over its samples (not over batches of unequal size), its alpha
    mean is over samples, and a model evaluated mid-training trains on afterwards (dropout on)."""
    from mmlnb_dist.recipes.fusion.steps import evaluate

    model = _model().train()
    batches = feature_batches((5, 2, 6))
    metrics, preds = evaluate(model, model, batches, {"image": None, "text": None}, DistEnv(), CLASSES)
    assert model.training and model.head.training
    model.eval()
    with torch.no_grad():
        outs = [model(image_features=b["image_features"], text_features=b["text_features"]) for b in batches]
    logits = torch.cat([o["logits"] for o in outs])
    labels = torch.cat([b["label"] for b in batches])
    assert metrics["loss"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-5)
    alpha = torch.cat([o["alpha"].flatten() for o in outs])
    assert metrics["alpha_mean"] == pytest.approx(float(alpha.mean()), rel=1e-5)
    torch.testing.assert_close(preds.probs, torch.softmax(logits, -1))


def test_fill_caches_keeps_given_features_and_leaves_the_model_training():
    """Filling the caches (an eval pass) stores the features a batch brings (extracted ones) under their keys,
    returns the split's keys sorted with their labels, and hands the model back in training mode: the heads
    trained afterwards keep their dropout."""
    from mmlnb_dist.recipes.fusion.steps import fill_caches

    model = _model().train()
    batches = feature_batches((4, 3))
    caches = {"image": FeatureCache("image", "id-i"), "text": FeatureCache("text", "id-t")}
    keys, labels = fill_caches(model, batches, caches, DistEnv())
    assert model.training and model.head.training
    assert keys == sorted(k for b in batches for k in b["key"])
    by_key = {k: (int(y), b["image_features"][i], b["text_features"][i])
              for b in batches for i, (k, y) in enumerate(zip(b["key"], b["label"]))}
    assert labels.tolist() == [by_key[k][0] for k in keys]
    torch.testing.assert_close(caches["image"].stacked(keys), torch.stack([by_key[k][1] for k in keys]))
    torch.testing.assert_close(caches["text"].stacked(keys), torch.stack([by_key[k][2] for k in keys]))


# -- the frozen-feature table ----------------------------------------------------------------------------------


class _Order:
    """A key loader whose order depends on the epoch it was set to."""

    def __init__(self, keys):
        self.keys, self.epoch = keys, None

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        r = self.epoch % len(self.keys)
        keys = self.keys[r:] + self.keys[:r]
        return iter([{"key": keys[i:i + 2]} for i in range(0, len(keys), 2)])


def test_feature_table_deals_each_epochs_order_with_the_features_and_labels_of_its_keys():
    """Training from the table takes the batches of the epoch being trained (a table that never set the epoch
    replayed one order every epoch, unlike the uncached run), each row with its own key's label and features."""
    keys = ["a", "b", "c", "d", "e"]
    labels = torch.tensor([0, 1, 2, 1, 0])
    image, text = torch.arange(10.0).view(5, 2), -torch.arange(15.0).view(5, 3)
    table = FeatureTable(keys, labels, image, text, order=_Order(keys))
    for epoch in (1, 3):
        got = list(table.batches(epoch=epoch, num_micro_batches=2))
        order = _Order(keys)
        order.set_epoch(epoch)
        want = list(order)[:2]
        assert [b["key"] for b in got] == [b["key"] for b in want]
        for b in got:
            idx = [keys.index(k) for k in b["key"]]
            assert torch.equal(b["label"], labels[idx])
            assert torch.equal(b["image_features"], image[idx]) and torch.equal(b["text_features"], text[idx])


def test_feature_cache_on_disk_gives_each_key_its_own_features(tmp_path):
    """A table written in one order and read back maps every key to the features it was stored with."""
    cache = FeatureCache("text", "ident", tmp_path, provenance={"image_size": 32})
    feats = torch.tensor([[1.0, 1.5], [2.0, 2.5], [3.0, 3.5]])
    cache.put(["k2", "k3", "k1"], feats)
    cache.put(["k0"], torch.tensor([[0.0, 0.5]]))
    assert cache.save() == tmp_path / "text-ident.safetensors"
    again = FeatureCache("text", "ident", tmp_path, provenance={"image_size": 32})
    assert again.load() and len(again) == 4
    torch.testing.assert_close(again.stacked(["k0", "k1", "k2", "k3"]),
                               torch.tensor([[0.0, 0.5], [3.0, 3.5], [1.0, 1.5], [2.0, 2.5]]))


def test_cached_keys_name_only_samples_with_features():
    """The key loader keeps samples whose features are cached and refuses the others (bad when the cache was
    filled), which the loader then replaces as it replaces any bad sample."""
    pre = CachedKeys(["a", "b"])
    assert pre.decode({"__key__": "a", "png": b"x"}, None) == {"key": "a"}
    with pytest.raises(ValueError, match="no cached features"):
        pre.decode({"__key__": "z"}, None)


# -- what the run records ----------------------------------------------------------------------------------------


def test_what_trained_counts_optimizer_elements_per_part_and_keeps_every_epochs_record():
    """`metrics.json["trained"]`: the elements per model part and per parameter group the optimizer holds (summed
    over all of a part's parameters), lambda and train/val alpha of every epoch, and who wrote the descriptions,
    adapter digest included (an ablation table compares rows by them)."""
    from mmlnb_dist.recipes.fusion.record import what_trained

    model = _model()
    opt = torch.optim.Adam(model.param_groups())
    describe = {"model": "qwen", "tiny_seed": None, "tiny_vision": None, "adapter": "/a", "adapter_sha256": "abc",
                "prompt": "p", "other": 1}
    history = [{"epoch": 0, "train/lambda": 0.3, "train/alpha_mean": 0.4, "val/alpha_mean": 0.6},
               {"epoch": 1, "train/lambda": 0.65, "train/alpha_mean": 0.45, "val/alpha_mean": 0.7}]
    recipe = SimpleNamespace(model=model, engine=SimpleNamespace(optimizer=opt), history=history,
                             cfg=SimpleNamespace(fusion=SimpleNamespace(model=SimpleNamespace(mode="prmf"))),
                             shards=SimpleNamespace(root="/s", digest="d1", manifest={"provenance":
                                                                                      {"describe": describe}}))
    got = what_trained(recipe)

    def n(module):
        return sum(p.numel() for p in module.parameters())

    assert got["optimizer"]["parts"] == {"image_encoder": n(model.image_encoder), "text_encoder": n(model.text_encoder),
                                         "fusion": n(model.fusion), "head": n(model.head),
                                         "image_head": n(model.image_head)}
    assert got["optimizer"]["groups"] == {"image_encoder": n(model.image_encoder),
                                          "text_encoder": n(model.text_encoder),
                                          "heads": n(model.fusion) + n(model.head) + n(model.image_head)}
    assert got["mode"] == "prmf" and got["epochs"] == [0, 1] and got["lambdas"] == [0.3, 0.65]
    assert got["alpha_means"] == [0.4, 0.45] and got["val_alpha_means"] == [0.6, 0.7]
    assert got["descriptions"] == {"shards": "/s", "manifest_sha256": "d1",
                                   "describe": {k: describe[k] for k in ("model", "tiny_seed", "tiny_vision",
                                                                         "adapter", "adapter_sha256", "prompt")}}

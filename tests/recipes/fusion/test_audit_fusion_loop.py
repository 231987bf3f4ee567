"""Mutation audit of the fusion training loop's bookkeeping and of the per-batch feature path, run for real on a
small PRMF classifier fed features (no shards, no engine): which optimizer steps write a mid-epoch checkpoint or
honour a SIGTERM, which are logged, what `fusion.record_train_keys` writes, an epoch too short for one optimizer
step, the frozen-feature cache (hits, misses, copies, empty saves), evaluation leaving an eval-mode model as it
found it, and the run's `trained` and curriculum records."""
from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.fusion import loop
from mmlnb_dist.recipes.fusion.config import CurriculumConfig
from mmlnb_dist.recipes.fusion.curriculum import CurriculumState, phase_index
from mmlnb_dist.recipes.fusion.features import FeatureCache
from mmlnb_dist.recipes.fusion.model import FusionClassifier

from support.engines import AdamEngine, EpochLoader
from support.fusion_stand_ins import DIM_I, DIM_T, feature_batches, stand_in_fusion

CLASSES = ["UD", "PD", "D"]


def _model(mode: str = "prmf", dropout: float = 0.3, seed: int = 0) -> FusionClassifier:
    return stand_in_fusion(mode, dropout, seed, may_run=True)


CUR = CurriculumConfig(schedule="step", start=0.3, end=1.0, ramp_start=1, ramp_end=4, step_every=1,
                       phases=[{"start_epoch": 0, "train_text_encoder": False}, {"start_epoch": 2}])


def _recipe(tmp_path, batches, mode="prmf", every=0, log_every=1000, record=False, stop=False):
    model = _model(mode)
    events = {"saved": [], "stop_asks": [], "logged": []}
    return SimpleNamespace(
        cfg=SimpleNamespace(run=SimpleNamespace(seed=3),
                            fusion=SimpleNamespace(curriculum=CUR, record_train_keys=record),
                            train=SimpleNamespace(checkpoint_every_steps=every, log_every=log_every)),
        env=DistEnv(), engine=SimpleNamespace(engine=AdamEngine(model), lr=lambda: 1e-3), model=model,
        plan=SimpleNamespace(accumulation=1), steps_per_epoch=len(batches), train_loader=EpochLoader(batches),
        phases=SimpleNamespace(enter=lambda epoch: phase_index(CUR, epoch), caches={"image": None, "text": None},
                               table=None),
        state=CurriculumState(), global_step=0, mid_epoch=None, run_dir=tmp_path, autocast=contextlib.nullcontext,
        watch=SimpleNamespace(see=lambda v: None, step_done=lambda *a: None),
        stop=SimpleNamespace(requested=stop,
                             # `stop`: as if a stop were asked at every step (without raising): save at once
                             stop_if_asked=lambda env, save, where: (events["stop_asks"].append((where, save)),
                                                                     stop and save and save())),
        logger=SimpleNamespace(log_metrics=lambda metrics, step: events["logged"].append((step, metrics))),
        events=events,
    )


@pytest.fixture
def saves(monkeypatch):
    got = []
    monkeypatch.setattr(loop, "save_mid_epoch", lambda recipe, epoch, step, loader, sums: got.append((epoch, step)))
    return got


def test_periodic_checkpoints_are_mid_epoch_only_the_epochs_end_has_its_own(tmp_path, saves):
    """checkpoint_every_steps=1 over 3 steps: mid-epoch checkpoints after steps 1 and 2; step 3 ends the epoch,
    whose checkpoint the recipe writes after its evaluation (a mid-epoch one there would resume a finished epoch)."""
    recipe = _recipe(tmp_path, feature_batches(), every=1)
    loop.train_epoch(recipe, 1)
    assert saves == [(1, 1), (1, 2)]
    # counted in optimizer steps of the whole run: every 2 from global step 4 on saves at 6 only (step 2 of 3)
    recipe = _recipe(tmp_path, feature_batches(), every=2)
    recipe.global_step = 4
    saves.clear()
    loop.train_epoch(recipe, 0)
    assert saves == [(0, 2)]


def test_a_sigterm_is_honoured_inside_the_epoch_and_left_to_the_epochs_end_at_its_last_step(tmp_path, saves):
    recipe = _recipe(tmp_path, feature_batches(), every=2, stop=True)
    loop.train_epoch(recipe, 0)
    asks = recipe.events["stop_asks"]
    assert [where for where, _ in asks] == ["at step 1 of epoch 0", "at step 2 of epoch 0"]
    # a step that was just saved periodically needs no second checkpoint; the others save if asked to stop
    assert asks[0][1] is not None and asks[1][1] is None
    assert saves == [(0, 1), (0, 2)]  # step 1: the stop's checkpoint (asked at every step here), step 2: periodic


def test_training_metrics_are_logged_every_log_every_optimizer_steps(tmp_path, saves):
    recipe = _recipe(tmp_path, feature_batches((2, 2, 2, 2, 2)), log_every=2)
    loop.train_epoch(recipe, 2)
    logged = recipe.events["logged"]
    assert [step for step, _ in logged] == [2, 4]
    assert all(m["train/lambda"] == pytest.approx(CUR.start + (CUR.end - CUR.start) / 3) for _, m in logged)


def test_a_fusion_without_alpha_reports_no_alpha_mean(tmp_path, saves):
    stats = loop.train_epoch(_recipe(tmp_path, feature_batches(), mode="concat"), 0)
    assert "train/alpha_mean" not in stats and stats["train/loss"] > 0


def test_recorded_train_keys_name_each_micro_batch_its_optimizer_step_and_append_across_epochs(tmp_path, saves):
    batches = feature_batches()
    recipe = _recipe(tmp_path, batches, record=True)
    loop.train_epoch(recipe, 0)
    loop.train_epoch(recipe, 1)  # a second epoch (or a resumed process) appends to the same file
    lines = [json.loads(x) for x in (tmp_path / "train_keys" / "rank-0.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in lines] == [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (1, 6)]
    assert [r["keys"] for r in lines] == [b["key"] for b in batches] * 2
    assert {(r["rank"], r["world_size"]) for r in lines} == {(0, 1)}


def test_an_epoch_shorter_than_one_optimizer_step_is_a_config_error(tmp_path, saves):
    recipe = _recipe(tmp_path, feature_batches((4,)))
    recipe.plan.accumulation = 2
    with pytest.raises(ConfigError, match="train.global_batch_size: an epoch has 1 micro batches per rank, fewer "
                                          "than the gradient accumulation 2"):
        loop.train_epoch(recipe, 0)


def test_an_epoch_from_the_feature_table_trains_at_most_what_is_left_of_the_epoch():
    """From the frozen-feature table a resumed epoch trains only its remaining steps."""
    order = EpochLoader([{"key": ["a"]}] * 5)
    calls = {}

    def batches(**kw):
        calls.update(kw)
        return iter([])

    recipe = SimpleNamespace(plan=SimpleNamespace(accumulation=1), steps_per_epoch=4,
                             phases=SimpleNamespace(table=SimpleNamespace(order=order, batches=batches)))
    _, n, loader = loop.epoch_batches(recipe, 3, None)
    assert (n, loader, calls["num_micro_batches"], order.epoch) == (4, order, 4, 3)
    resume = SimpleNamespace(position=SimpleNamespace(step_in_epoch=3))
    _, n, _ = loop.epoch_batches(recipe, 3, resume)
    assert n == 1 and order.position is resume.position


# -- the feature path --------------------------------------------------------------------------------------------


def _raw_batch(keys, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"key": keys, "label": torch.zeros(len(keys), dtype=torch.long), "image": torch.randn(len(keys), 8,
                                                                                                 generator=g)}


def test_a_cached_image_encoder_runs_once_per_key_and_later_batches_are_served_from_the_cache():
    from mmlnb_dist.recipes.fusion.steps import prepare_inputs

    model = _model()
    model.text_encoder = None
    cache = FeatureCache("image", "id")
    batch = _raw_batch(["a", "b"])
    first = prepare_inputs(model, batch, {"image": cache, "text": None}, torch.device("cpu"))
    assert model.image_encoder.calls == 1 and len(cache) == 2 and "pixel_values" not in first
    again = prepare_inputs(model, batch, {"image": cache, "text": None}, torch.device("cpu"))
    assert model.image_encoder.calls == 1  # a hit: no encoder pass
    torch.testing.assert_close(again["image_features"], batch["image"][:, :DIM_I])
    prepare_inputs(model, _raw_batch(["a", "c"]), {"image": cache, "text": None}, torch.device("cpu"))
    assert model.image_encoder.calls == 2 and len(cache) == 3  # one key missing: the whole batch is encoded
    uncached = prepare_inputs(model, batch, {"image": None, "text": None}, torch.device("cpu"))
    assert set(uncached) == {"pixel_values"} and model.image_encoder.calls == 2  # the model encodes it itself


def test_features_reach_the_model_in_its_own_dtype():
    from mmlnb_dist.recipes.fusion.steps import prepare_inputs

    model = _model().double()
    cache = FeatureCache("image", "id")
    cache.put(["a"], torch.ones(1, DIM_I))
    inputs = prepare_inputs(model, {"key": ["a"], "text_features": torch.ones(1, DIM_T)},
                            {"image": cache, "text": None}, torch.device("cpu"))
    assert inputs["image_features"].dtype == torch.float64 and inputs["text_features"].dtype == torch.float64


def test_the_cache_keeps_its_own_copy_and_answers_only_when_every_key_is_there(tmp_path):
    cache = FeatureCache("image", "id", tmp_path)
    feats = torch.ones(2, 3)
    cache.put(["a", "b"], feats)
    feats.zero_()  # the caller reusing its buffer must not change what was cached
    torch.testing.assert_close(cache.lookup(["b", "a"]), torch.ones(2, 3))
    assert cache.lookup(["a", "z"]) is None


def test_an_empty_cache_writes_nothing_and_a_missing_file_is_no_hit(tmp_path):
    cache = FeatureCache("image", "id", tmp_path)
    assert cache.save() is None and not list(tmp_path.iterdir())
    assert cache.load() is False and not cache.loaded_from_disk and len(cache) == 0
    cache.put(["a"], torch.ones(1, 2))
    cache.save()
    again = FeatureCache("image", "id", tmp_path)
    assert again.load() is True and again.loaded_from_disk


def test_evaluating_a_model_in_eval_mode_leaves_it_in_eval_mode():
    from mmlnb_dist.recipes.fusion.steps import evaluate, fill_caches

    model = _model().eval()
    batches = feature_batches((3, 2))
    evaluate(model, model, batches, {"image": None, "text": None}, DistEnv(), CLASSES)
    assert not model.training and not model.head.training
    fill_caches(model, batches, {"image": FeatureCache("image", "i")}, DistEnv())
    assert not model.training and not model.head.training


# -- what the run records ------------------------------------------------------------------------------------------


def test_optimizer_parameters_outside_the_model_and_unnamed_groups_are_recorded_as_such():
    from mmlnb_dist.recipes.fusion.record import PARTITIONED, optimizer_parts

    model = _model()
    flat = nn.Parameter(torch.zeros(7))  # a ZeRO partition: no module parameter
    opt = torch.optim.SGD([{"params": list(model.head.parameters())}, {"params": [flat]}], lr=0.1)
    got = optimizer_parts(SimpleNamespace(model=model, engine=SimpleNamespace(optimizer=opt)))
    n_head = sum(p.numel() for p in model.head.parameters())
    assert got == {"parts": {"head": n_head, PARTITIONED: 7}, "groups": {"group0": n_head, "group1": 7}}


def test_what_trained_of_a_fusion_without_alpha_and_of_reference_descriptions():
    from mmlnb_dist.recipes.fusion.record import what_trained

    model = _model("concat")
    recipe = SimpleNamespace(model=model, engine=SimpleNamespace(optimizer=torch.optim.Adam(model.param_groups())),
                             history=[{"epoch": 0, "train/lambda": 0.3}],
                             cfg=SimpleNamespace(fusion=SimpleNamespace(model=SimpleNamespace(mode="concat"))),
                             shards=SimpleNamespace(root="/s", digest="d", manifest={}))
    got = what_trained(recipe)
    assert got["alpha_means"] == [None] and got["val_alpha_means"] == [None]
    assert got["descriptions"] == {"shards": "/s", "manifest_sha256": "d", "describe": None}


def test_the_curriculum_figure_gets_every_trained_epochs_lambda_and_the_phase_table():
    from mmlnb_dist.recipes.fusion.finish import curriculum_used

    phases = CurriculumConfig().phases
    recipe = SimpleNamespace(history=[{"epoch": 0, "train/lambda": 0.3}, {"epoch": 1, "train/lambda": 0.44}],
                             cfg=SimpleNamespace(fusion=SimpleNamespace(curriculum=SimpleNamespace(phases=phases),
                                                                 model=SimpleNamespace(mode="prmf"))))
    assert curriculum_used(recipe) == {
        "epochs": [0, 1], "lambdas": [0.3, 0.44],
        "phases": [{"start_epoch": 0, "train_image_encoder": True, "train_text_encoder": False},
                   {"start_epoch": 50, "train_image_encoder": True, "train_text_encoder": True},
                   {"start_epoch": 100, "train_image_encoder": False, "train_text_encoder": False}]}


def test_an_exports_recorded_normalisation_wins_over_the_encoders_and_no_encoder_means_imagenets():
    """`predict` passes the mean/std an export recorded: the images are normalised with those, not with what the
    encoder's name says today; without an encoder name or recorded values, ImageNet's."""
    from mmlnb_dist.models.encoders import IMAGENET_MEAN, IMAGENET_STD
    from mmlnb_dist.recipes.fusion.steps import preprocess_for

    white = torch.full((1, 4, 4, 3), 255, dtype=torch.uint8)

    def first_pixel(pre):
        return pre.finalize({"image": white.clone()})["image"][0, :, 0, 0]

    recorded = {"mean": [0.5, 0.25, 0.0], "std": [0.5, 0.25, 2.0]}
    got = first_pixel(preprocess_for(CLASSES, 4, augment=False, image_encoder="tiny", normalisation=recorded))
    torch.testing.assert_close(got, torch.tensor([1.0, 3.0, 0.5]))
    got = first_pixel(preprocess_for(CLASSES, 4, augment=False))
    torch.testing.assert_close(got, torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]))


def test_fill_caches_returns_the_split_in_key_order_whatever_order_the_loader_dealt():
    """The feature table's rows are in sorted key order, the same on every rank (each rank's loader deals its own
    share in its own order), with each key's own label."""
    from mmlnb_dist.recipes.fusion.steps import fill_caches

    batches = feature_batches((3, 3))
    for b, keys in zip(batches, (["z", "b", "m"], ["a", "y", "c"])):
        b["key"] = keys
    keys, labels = fill_caches(_model(), batches, {"image": FeatureCache("image", "i")}, DistEnv())
    assert keys == ["a", "b", "c", "m", "y", "z"]
    by_key = {k: int(y) for b in batches for k, y in zip(b["key"], b["label"])}
    assert labels.tolist() == [by_key[k] for k in keys]

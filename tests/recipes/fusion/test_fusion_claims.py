"""Headline claims of the fusion recipe, pinned on REAL short runs (tiny models, in-process, CPU):

- the curriculum is wired into training: the lambda logged for every epoch is `curriculum_lambda(cfg, epoch)`,
  the phase sequence is the configured one, and an encoder's weights stay bit-identical through every epoch in
  which its phase freezes it (compared in the per-epoch checkpoints, not inferred from a learning rate of 0);
- frozen-feature caching changes speed, not results: every checkpoint and the export of a run with the cache
  equal those of the same run without it (see `test_feature_cache_changes_speed_not_results` for why "equal"
  is to 1e-5 and not bit for bit), and a cache hit runs the frozen encoders zero times.

One cached run (6 epochs, three phases, a checkpoint per epoch, features on disk in a shared cache folder) serves
all three tests; the cache-off run and the cache-hit run are each one more run.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Dict, List

import pytest
import torch

from support.fusion import checkpoint_weights, epoch_records, make_shards, tiny_config

EPOCHS = 6
# Phase 0 (epochs 0-1): text frozen; phase 1 (2-3): both train; phase 2 (4-5): both frozen (cached features).
PHASES = "[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 2}, " \
         "{start_epoch: 4, train_image_encoder: false, train_text_encoder: false}]"
PHASE_OF_EPOCH = [0, 0, 1, 1, 2, 2]
CLAIMS = [f"train.epochs={EPOCHS}", "fusion.curriculum.schedule=step", "fusion.curriculum.step_every=1",
          "fusion.curriculum.ramp_start=1", "fusion.curriculum.ramp_end=4", f"fusion.curriculum.phases={PHASES}",
          "train.checkpoint_every=1", "train.keep_checkpoints=100", "run.seed=0"]


def _tags() -> List[str]:
    return [f"epoch-{e:04d}" for e in range(EPOCHS)]


def _part(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    part = {k: v for k, v in state.items() if k.startswith(prefix)}
    assert part, f"no tensors under {prefix}"
    return part


def _identical(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> List[str]:
    """Names of the tensors that differ (bit for bit)."""
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory):
    """The reference run: cache on, features on disk under a shared `run.cache_dir`. A spy on the training loop's
    `curriculum_loss` records what every loss call received: (epoch, lambda, image-only logits given)."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion import loop
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    root = tmp_path_factory.mktemp("claims")
    shards = make_shards(root, n=90, size=64)
    cache_dir = root / "cache"
    cfg = tiny_config(shards, root / "runs", "cached", [*CLAIMS, f"run.cache_dir={cache_dir}"])

    loss_calls: List[tuple] = []
    where = {"epoch": None}
    real_loss, real_epoch = loop.curriculum_loss, FusionRecipe.train_epoch

    def spy_epoch(self, epoch):
        where["epoch"] = epoch
        return real_epoch(self, epoch)

    def spy_loss(logits, image_logits, target, lam):
        loss_calls.append((where["epoch"], lam, image_logits is not None))
        return real_loss(logits, image_logits, target, lam)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "curriculum_loss", spy_loss)
        patch.setattr(FusionRecipe, "train_epoch", spy_epoch)
        result = run(FusionRecipe, cfg)
    return {"root": root, "shards": shards, "cfg": cfg, "result": result, "cache_dir": cache_dir,
            "run_dir": root / "runs" / "cached", "loss_calls": loss_calls}


@pytest.mark.slow
def test_curriculum_lambda_phases_and_frozen_encoders_follow_the_config(cached_run):
    """Without it a user could lose the curriculum itself while the logs still look right: a loss weighted by a
    lambda other than the logged `curriculum_lambda(cfg, epoch)` (say `start` throughout), or a loss that drops the
    image-only head's term (its head then never trains), or an encoder that trains in a phase that freezes it."""
    from mmlnb_dist.core.engine import seed_everything
    from mmlnb_dist.recipes.fusion.curriculum import curriculum_lambda, phase_index
    from mmlnb_dist.recipes.fusion.model import build_classifier

    cfg, run_dir = cached_run["cfg"], cached_run["run_dir"]
    cur = cfg.fusion.curriculum

    # lambda and phase per epoch, as the run logged them (metrics.jsonl: every logger call of the run)
    records = epoch_records(run_dir)
    assert [r["epoch"] for r in records] == list(range(EPOCHS))
    want = [curriculum_lambda(cur, e) for e in range(EPOCHS)]
    assert [r["train_epoch/lambda"] for r in records] == pytest.approx(want, abs=1e-7)
    assert len(set(want)) >= 3, "the configured schedule must change lambda for this test to mean anything"
    assert [int(r["train_epoch/phase"]) for r in records] == PHASE_OF_EPOCH
    assert [phase_index(cur, e) for e in range(EPOCHS)] == PHASE_OF_EPOCH  # the config says what we think
    # every per-step record carries its epoch's lambda too
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    step_lambdas = [(r["step"], r["train/lambda"]) for r in steps if "train/lr" in r]
    assert step_lambdas, "no per-step record was logged"
    bounds = [r["step"] for r in records]  # global step at the end of each epoch
    for step, lam in step_lambdas:
        epoch = next(e for e, end in enumerate(bounds) if step <= end)
        assert lam == pytest.approx(want[epoch], abs=1e-7), (step, epoch)
    # ... and the loss the optimizer stepped on used that lambda (not only the logs), with the image-only logits
    # (prmf is a two-branch mode: its loss has the image head's term whenever lambda < 1)
    calls = cached_run["loss_calls"]
    assert sorted({epoch for epoch, _, _ in calls}) == list(range(EPOCHS))
    assert [(epoch, lam) for epoch, lam, _ in calls] == [(epoch, want[epoch]) for epoch, _, _ in calls]
    assert len({lam for _, lam, _ in calls}) >= 3 and min(lam for _, lam, _ in calls) < 1.0
    assert all(with_image for _, lam, with_image in calls if lam < 1.0), "image-only logits missing from the loss"

    # weights: the initial model (same seed, same builder), then every epoch's checkpoint
    seed_everything(cfg.run.seed)
    init = {k: v.float() if v.is_floating_point() else v
            for k, v in build_classifier(cfg.fusion.model, 3).state_dict().items()}
    ckpt = run_dir / "checkpoints"
    states = [init] + [checkpoint_weights(ckpt, tag) for tag in _tags()]  # states[e + 1] = after epoch e

    def changed(prefix: str, before: int, after: int) -> List[str]:
        return _identical(_part(states[before], prefix), _part(states[after], prefix))

    # phase 0 (epochs 0-1): text encoder frozen from the first step, image encoder trains
    assert changed("text_encoder.", 0, 1) == [] and changed("text_encoder.", 1, 2) == []
    assert changed("image_encoder.", 0, 1) and changed("image_encoder.", 1, 2)
    # phase 1 (epochs 2-3): both train
    assert changed("text_encoder.", 2, 3) and changed("image_encoder.", 2, 3)
    # phase 2 (epochs 4-5): both frozen, bit for bit (buffers such as batch-norm statistics included); heads train
    for prefix in ("image_encoder.", "text_encoder."):
        assert changed(prefix, 4, 5) == [] and changed(prefix, 5, 6) == [], prefix
    assert changed("head.", 4, 5) and changed("head.", 5, 6)
    # the image-only head is trained by the (1 - lambda) term of the loss: it moves in every epoch with lambda < 1
    # (at lambda = 1 Adam's momentum may still move it: nothing is asserted there)
    for epoch in range(EPOCHS):
        if want[epoch] < 1.0:
            assert changed("image_head.", epoch, epoch + 1), f"image head unchanged in epoch {epoch}"


@pytest.mark.slow
def test_feature_cache_changes_speed_not_results(cached_run):
    """The same run without the cache: every per-epoch checkpoint and the export agree with the cached run.

    To 1e-5, not bit for bit, because a cached feature is computed in another batch than the one the uncached
    run computes it in: the cache is filled by an evaluation pass over the train split (manifest order), the
    uncached run encodes each training batch (shuffled order, another last-batch size). The encoders' outputs
    depend in the last bit on the batch: the text tokenizer pads to the longest description of the batch (a
    different sequence length changes the summation order of attention and pooling), and the CPU convolution
    picks kernels by batch size (measured: the tiny image encoder gives bit-equal features for two batches of 16
    but not for a batch of 1 versus 16). Those 1-ulp feature differences move the weights by ~1e-7 over these
    epochs (measured 6e-7 at most); a changed sample order or a stale feature moves them by ~1e-3."""
    from safetensors.torch import load_file

    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    root = cached_run["root"]
    cfg = tiny_config(cached_run["shards"], root / "runs", "uncached",
                      [*CLAIMS, "fusion.cache_frozen_features=false"])
    result = run(FusionRecipe, cfg)
    assert result["cache/hits"] == 0 and result["cache/misses"] == 0
    assert cached_run["result"]["cache/misses"] == 3  # the text cache of phase 0, both caches of phase 2
    assert result["best_epoch"] == cached_run["result"]["best_epoch"]

    pairs = [(checkpoint_weights(cached_run["run_dir"] / "checkpoints", tag),
              checkpoint_weights(root / "runs" / "uncached" / "checkpoints", tag), tag) for tag in _tags()]
    pairs.append((load_file(cached_run["result"]["export_dir"] + "/model.safetensors"),
                  load_file(result["export_dir"] + "/model.safetensors"), "export"))
    for cached, uncached, what in pairs:
        assert cached.keys() == uncached.keys(), what
        for key in cached:
            torch.testing.assert_close(cached[key], uncached[key], atol=1e-5, rtol=0, msg=f"{what}: {key}")
    for key in ("val/accuracy", "val/balanced_accuracy", "val/loss"):
        assert result[key] == pytest.approx(cached_run["result"][key], abs=1e-5), key


@pytest.mark.slow
def test_a_cache_hit_runs_the_frozen_encoders_zero_times(cached_run, monkeypatch):
    """A second run on the same `run.cache_dir` (same seed, so the same encoder weights and identities) finds
    every frozen encoder's train-split features on disk: entering the phase and training run the cached encoders
    zero times (text in phase 0; both in phase 2, where the heads train from features alone), counted with
    forward hooks on the encoders themselves. Only the train split is kept on disk: validation encodes its samples
    once per phase (a miss, in the phase's first epoch) and hits the in-memory cache afterwards."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion import finish as finish_module
    from mmlnb_dist.recipes.fusion import model as model_module
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    forwards: Counter = Counter()  # ((epoch, "train" | "val") or "finish", encoder) -> forward calls
    where = {"now": "setup"}

    build = model_module.build_classifier

    def counting_build(*args, **kwargs):
        model = build(*args, **kwargs)
        for name in ("image_encoder", "text_encoder"):
            getattr(model, name).register_forward_hook(
                lambda module, inputs, output, name=name: forwards.update([(where["now"], name)]))
        return model

    train_epoch, evaluate, finish = FusionRecipe.train_epoch, FusionRecipe.evaluate, finish_module.finish

    def tracked_epoch(self, epoch):
        where["now"] = (epoch, "train")  # entering the phase (the cache fill) happens inside train_epoch
        return train_epoch(self, epoch)

    def tracked_evaluate(self, split="val"):
        if where["now"] != "finish":
            where["now"] = (where["now"][0], split)
        return evaluate(self, split)

    def tracked_finish(recipe):
        where["now"] = "finish"
        return finish(recipe)

    monkeypatch.setattr(model_module, "build_classifier", counting_build)
    monkeypatch.setattr(FusionRecipe, "train_epoch", tracked_epoch)
    monkeypatch.setattr(FusionRecipe, "evaluate", tracked_evaluate)
    monkeypatch.setattr(finish_module, "finish", tracked_finish)

    root = cached_run["root"]
    cfg = tiny_config(cached_run["shards"], root / "runs", "hit", [*CLAIMS, f"run.cache_dir={cached_run['cache_dir']}"])
    result = run(FusionRecipe, cfg)

    def count(epoch, part, name):
        return forwards[((epoch, part), name)]

    for epoch in (0, 1):  # phase 0: text frozen and cached, image trains
        assert count(epoch, "train", "text_encoder") == 0, (epoch, forwards)
        assert count(epoch, "train", "image_encoder") > 0, (epoch, forwards)  # the hooks do count
    assert count(0, "val", "text_encoder") > 0 and count(1, "val", "text_encoder") == 0, forwards
    for epoch in (2, 3):
        assert count(epoch, "train", "text_encoder") > 0, (epoch, forwards)
    for name in ("image_encoder", "text_encoder"):  # phase 2: both frozen and cached
        assert count(4, "train", name) == 0 and count(5, "train", name) == 0, (name, forwards)
        assert count(5, "val", name) == 0, (name, forwards)
    # every cache found on disk: phase 0's text cache, phase 2's two. Exactly those: the finish's re-entry of the
    # best phase no longer reads (nor refills) the train split's table, only val/test are evaluated there
    assert result["cache/misses"] == 0 and result["cache/hits"] == 3, result
    # and the run that hit trained exactly like the run that filled the cache
    same = _identical(checkpoint_weights(cached_run["run_dir"] / "checkpoints", _tags()[-1]),
                      checkpoint_weights(root / "runs" / "hit" / "checkpoints", _tags()[-1]))
    assert same == []

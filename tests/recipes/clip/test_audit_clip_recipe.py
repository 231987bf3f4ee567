"""Audit of the CLIP recipe's own logic (recipes/clip/recipe.py, variants.py, branches.py, blocks.py, plots.py): the
config guards at their boundaries and only for the towers that are built; which direction of `train.best_metric` is
better; `evaluate` in eval mode with the configured top-k and the positive-class-weighted loss; `train_epoch` back
in training mode after an evaluation, with its sample-weighted loss; which epochs are evaluated and the best
checkpoint they pick; the resume state a checkpoint records; the ablation rows' baseline encoders; the encoder
branches' default trainable stage and token limit; the last N tower blocks train; the figures' data. The recipe
runs on stand-ins (a linear model with dropout, list loaders, an engine of plain SGD): no DeepSpeed, no shards."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from support.clip import clip_config

LABELS = ["a", "b", "c", "d", "e"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """The profile's config; `_with` derives the others from its folders (no shards are read)."""
    root = tmp_path_factory.mktemp("clip-audit-recipe")
    return clip_config(root / "no-shards", root / "runs")


def _with(cfg, *overrides: str):
    return clip_config(cfg.data.shards, cfg.run.output_dir, *overrides)


# -- check_config ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [
    ["clip.model.towers.unfreeze_blocks=4"],  # as many blocks as the tiny towers have (tiny.layers=4)
    ["clip.top_k=2", "train.best_metric=at_least_2_of_top_k"],  # j == k
    # an image-encoder baseline builds no tiny CLIP tower: neither its patch size nor its depth applies
    ["clip.model.fusion=image_only", "clip.model.image_encoder=tiny", "data.loader.image_size=36"],
    ["clip.model.fusion=text_only", "clip.model.text_encoder=tiny-bert", "data.loader.image_size=36"],
])
def test_config_check_accepts_the_boundaries_and_ignores_towers_not_built(cfg, overrides):
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    ClipRecipe.check_config(_with(cfg, *overrides), world_size=1)


@pytest.mark.parametrize("overrides, key", [
    (["clip.model.towers.unfreeze_blocks=5"], "clip.model.towers.unfreeze_blocks"),
    (["clip.top_k=2", "train.best_metric=at_least_3_of_top_k"], "train.best_metric"),
    (["data.loader.image_size=36"], "data.loader.image_size"),
    (["clip.model.towers.name=tiny-open_clip", "data.loader.image_size=36"], "data.loader.image_size"),
    (["clip.model.fusion=image_only", "clip.model.image_encoder=nosuch"], "clip.model.image_encoder"),
])
def test_config_check_refuses_past_the_boundaries(cfg, overrides, key):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ClipRecipe.check_config(_with(cfg, *overrides), world_size=1)


# -- best checkpoint direction ----------------------------------------------------------------------------------
@pytest.mark.parametrize("metric, lower", [("loss", True), ("hamming_loss", True), ("micro_f1", False),
                                           ("macro_auroc", False), ("at_least_1_of_top_k", False)])
def test_is_better_follows_the_direction_of_the_best_metric(cfg, metric, lower):
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    recipe = ClipRecipe.__new__(ClipRecipe)
    recipe.cfg = _with(cfg, f"train.best_metric={metric}")
    recipe.best = None
    assert recipe.is_better(0.5)  # anything beats no best yet
    recipe.best = {"value": 0.5}
    assert recipe.is_better(0.4) is lower and recipe.is_better(0.6) is not lower


# -- stand-ins ------------------------------------------------------------------------------------------------
class _Model(nn.Module):
    """image [B, 5] -> logits [B, 5] through a linear layer and dropout (p=0.5: train mode shows in every output);
    records the mode of each forward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear, self.drop, self.modes = nn.Linear(len(LABELS), len(LABELS)), nn.Dropout(0.5), []

    def inputs(self, image, text, device):
        return {"x": image.to(device)}

    def forward(self, x):
        self.modes.append(self.training)
        return self.drop(self.linear(x))


class _Loader(list):
    """A list of batches with the loader calls the recipe makes."""

    def set_epoch(self, epoch):
        pass

    def resume_from(self, position):
        pass

    def end_epoch(self, *args, **kwargs):
        pass


class _Engine:
    """The DeepSpeed engine calls of train_epoch, with plain SGD on the stand-in model."""

    def __init__(self, module):
        self.module, self.engine = module, self
        self.opt = torch.optim.SGD(module.parameters(), lr=0.1)

    def __call__(self, **inputs):
        return self.module(**inputs)

    def train(self):
        self.module.train()

    def eval(self):
        self.module.eval()

    def backward(self, loss):
        loss.backward()

    def step(self):
        self.opt.step()
        self.opt.zero_grad()

    def was_step_applied(self):
        return True

    def lr(self):
        return 0.1


class _Null:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _batches(sizes, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = _Loader()
    for n in sizes:
        label = (torch.rand(n, len(LABELS), generator=g) < 0.4).float()
        label[label.sum(1) == 0, 0] = 1
        out.append({"image": torch.randn(n, len(LABELS), generator=g), "text": ["t"] * n, "label": label})
    return out


def _recipe(cfg, tmp_path, *overrides: str):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.core.signals import GracefulStop
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    recipe = ClipRecipe.__new__(ClipRecipe)
    recipe.cfg = _with(cfg, *overrides)
    recipe.env, recipe.run_dir, recipe.classes = DistEnv.from_environment(), tmp_path, list(LABELS)
    recipe.module = _Model()
    recipe.engine = _Engine(recipe.module)
    c = recipe.cfg.clip
    recipe.pos_weight = torch.tensor(c.pos_weight, dtype=torch.float32) if c.pos_weight is not None else None
    recipe.logger, recipe.watch, recipe.stop = _Null(), _Null(), GracefulStop()
    recipe.global_step, recipe.mid_epoch, recipe.best, recipe.history = 0, None, None, []
    return recipe


WEIGHTS = [1.0, 3.0, 0.5, 2.0, 4.0]


def test_evaluate_runs_the_model_in_eval_mode_with_the_configured_top_k_and_weighted_loss(cfg, tmp_path):
    """Every batch of the split once, dropout off (two evaluations agree), top-k of `clip.top_k` (2 here, the
    profile says 3), and the loss with `clip.pos_weight` by the BCE formula; checked with scikit-learn."""
    from sklearn.metrics import f1_score, hamming_loss

    recipe = _recipe(cfg, tmp_path, "clip.top_k=2", f"clip.pos_weight={WEIGHTS}")
    recipe.eval_loaders = {"val": _batches([4, 3, 5])}
    recipe.module.train()
    first = recipe.evaluate("val")
    assert recipe.module.modes and not any(recipe.module.modes)
    assert recipe.evaluate("val") == first

    x = torch.cat([b["image"] for b in recipe.eval_loaders["val"]])
    y = torch.cat([b["label"] for b in recipe.eval_loaders["val"]]).numpy()
    with torch.no_grad():
        logits = recipe.module.linear(x).double()
    top2 = np.zeros_like(y)
    np.put_along_axis(top2, np.argsort(-logits.numpy(), axis=1)[:, :2], 1, axis=1)
    assert first["num_samples"] == 12 and first["top_k"] == 2
    assert first["micro_f1"] == pytest.approx(f1_score(y, top2, average="micro"), abs=1e-6)
    assert first["macro_f1"] == pytest.approx(f1_score(y, top2, average="macro", zero_division=0), abs=1e-6)
    assert first["hamming_loss"] == pytest.approx(hamming_loss(y, top2), abs=1e-6)
    p, t, w = logits.sigmoid(), torch.tensor(y, dtype=torch.float64), torch.tensor(WEIGHTS, dtype=torch.float64)
    by_hand = -(w * t * p.log() + (1 - t) * (1 - p).log()).mean()
    assert first["loss"] == pytest.approx(float(by_hand), rel=1e-5)


def test_train_epoch_trains_in_train_mode_after_an_evaluation_and_averages_the_loss_per_sample(cfg, tmp_path):
    """An evaluation leaves the model in eval mode: the next epoch must switch dropout back on. The epoch's loss
    is the sample-weighted mean of its weighted-BCE batch losses (a short last batch counts less), one optimizer
    step per `accumulation` micro batches."""
    recipe = _recipe(cfg, tmp_path, "train.global_batch_size=8", "distributed.micro_batch_per_gpu=4",
                     f"clip.pos_weight={WEIGHTS}", "train.log_every=1")
    from mmlnb_dist.core.distributed import plan_batch

    recipe.plan = plan_batch(8, 1, 4)
    assert recipe.plan.accumulation == 2
    recipe.train_loader = _batches([4, 4, 4, 1])
    recipe.eval_loaders = {"val": _batches([3])}
    recipe.evaluate("val")
    losses, sizes = [], []
    original = recipe._loss

    def seen(logits, labels):
        loss = original(logits, labels)
        losses.append(float(loss.detach())), sizes.append(len(labels))
        return loss

    recipe._loss = seen
    recipe.module.modes.clear()
    stats = recipe.train_epoch(0)
    assert recipe.module.modes == [True] * 4 and recipe.global_step == 2
    assert sizes == [4, 4, 4, 1]
    assert stats["train/loss"] == pytest.approx(float(np.dot(losses, sizes) / 13), rel=1e-9)
    logits, labels = torch.randn(3, 5), (torch.rand(3, 5) < 0.5).float()
    assert float(original(logits, labels)) == pytest.approx(float(F.binary_cross_entropy_with_logits(
        logits, labels, pos_weight=torch.tensor(WEIGHTS))), rel=1e-6)


def test_an_epoch_with_fewer_micro_batches_than_the_accumulation_is_a_config_error(cfg, tmp_path):
    from mmlnb_dist.core.distributed import plan_batch
    from mmlnb_dist.core.errors import ConfigError

    recipe = _recipe(cfg, tmp_path, "train.global_batch_size=12", "distributed.micro_batch_per_gpu=4")
    recipe.plan = plan_batch(12, 1, 4)
    recipe.train_loader = _batches([4, 4])
    with pytest.raises(ConfigError, match="train.global_batch_size"):
        recipe.train_epoch(0)


class _Saves:
    def __init__(self):
        self.saved = []

    def save(self, engine, tag, client, best=None):
        self.saved.append((tag, client, best))
        return tag


@pytest.mark.parametrize("every, tag", [(None, "epoch-0003"), (5, "step-000042")])
def test_an_epoch_checkpoint_records_the_next_epoch_and_the_resume_state(cfg, tmp_path, every, tag):
    """The resume continues at `next_epoch` = epoch + 1 with the best checkpoint, the optimizer step and the
    history; tagged by epoch, or by optimizer step when mid-epoch checkpoints are on."""
    extra = [f"train.checkpoint_every_steps={every}"] if every else []
    recipe = _recipe(cfg, tmp_path, *extra)
    recipe.checkpoints = _Saves()
    recipe.global_step, recipe.history = 42, [{"epoch": 2, "val/micro_f1": 0.5}]
    recipe.best = {"tag": "epoch-0002", "epoch": 2, "metric": "micro_f1", "value": 0.5}
    assert recipe.save_checkpoint(3) == tag
    (got, client, best), = recipe.checkpoints.saved
    assert got == tag and best == recipe.best
    assert client["data_position"] == {"next_epoch": 4, "granularity": "epoch"}
    assert client["global_step"] == 42 and client["best"] == recipe.best and client["history"] == recipe.history


# -- ablation rows ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("towers, text_encoder, pretrained", [
    ("tiny", "tiny-bert", "false"), ("tiny-open_clip", "tiny-bert", "false"),
    ("openai/clip-vit-large-patch14", "dmis-lab/biobert-v1.1", "true")])
def test_the_baseline_rows_use_small_encoders_for_tiny_towers_and_the_seeds_otherwise(cfg, towers, text_encoder,
                                                                                      pretrained):
    from mmlnb_dist.recipes.clip.variants import rows

    table = rows(_with(cfg, f"clip.model.towers.name={towers}"))
    assert list(table)[0] == "concat"
    assert {name: o for name, (_, o) in table.items() if name not in ("resnet50_mlp", "bert_mlp")} == {
        f: [f"clip.model.fusion={f}"] for f in ("concat", "sum", "prmf", "image_only", "text_only", "zero_shot")}
    assert table["resnet50_mlp"][1] == ["clip.model.fusion=image_only", "clip.model.image_encoder=resnet50",
                                        f"clip.model.image_encoder_pretrained={pretrained}"]
    assert table["bert_mlp"][1] == ["clip.model.fusion=text_only", f"clip.model.text_encoder={text_encoder}"]


# -- encoder branches -------------------------------------------------------------------------------------------
def test_the_tiny_image_encoder_trains_its_last_stage_by_default_and_the_named_ones_otherwise():
    from mmlnb_dist.recipes.clip.branches import build_image_branch
    from mmlnb_dist.recipes.clip.config import ClipModelConfig

    def trainable(**fields):
        branch = build_image_branch(ClipModelConfig.model_validate({"image_encoder": "tiny",
                                                                    "image_encoder_pretrained": False, **fields}))
        return {name.split(".")[0] for name, p in branch.encoder.body.named_parameters() if p.requires_grad}

    assert trainable() == {"6", "7"}  # stage3: conv 6, batch norm 7 (8 is its ReLU)
    assert trainable(image_encoder_trainable=["stage1", "stage3"]) == {"0", "1", "6", "7"}
    assert trainable(image_encoder_trainable=[]) == set()


def test_the_bert_text_branch_cuts_captions_at_the_towers_token_limit():
    from mmlnb_dist.recipes.clip.branches import build_text_branch
    from mmlnb_dist.recipes.clip.config import ClipModelConfig

    branch = build_text_branch(ClipModelConfig.model_validate({"text_encoder": "tiny-bert",
                                                               "towers": {"max_length": 12, "unfreeze_blocks": 1}}))
    assert branch.max_length == 12
    tokens = branch.tokenize([" ".join(["necrosis"] * 40), "fat"])
    assert tokens["input_ids"].shape[1] <= 12


@pytest.mark.parametrize("epoch, evaluated", [(0, False), (2, True), (3, True)])
def test_an_epoch_is_evaluated_every_eval_every_epochs_and_at_the_last_and_its_best_metric_picks_the_best(
        cfg, tmp_path, epoch, evaluated):
    """train.eval_every=3 of 4 epochs: epochs 2 and 3 (the last) are evaluated, epoch 0 is not; the best
    checkpoint's value is `train.best_metric` (here the loss) of that evaluation, and the epoch is checkpointed."""
    recipe = _recipe(cfg, tmp_path, "train.eval_every=3", "train.epochs=4", "train.best_metric=loss",
                     "train.global_batch_size=4", "clip.top_k=2")
    from mmlnb_dist.core.distributed import plan_batch

    recipe.plan, recipe.report = plan_batch(4, 1, None), None
    recipe.train_loader, recipe.eval_loaders = _batches([4, 4]), {"val": _batches([3, 3], seed=1)}
    recipe.checkpoints = _Saves()
    recipe._train_and_evaluate(epoch, last=3)
    if not evaluated:
        assert recipe.best is None and recipe.history == []
        return
    (record,) = recipe.history
    assert record["epoch"] == epoch and record["val/num_samples"] == 6
    assert recipe.best == {"tag": f"epoch-{epoch:04d}", "epoch": epoch, "metric": "loss",
                           "value": record["val/loss"]}
    assert [tag for tag, _, _ in recipe.checkpoints.saved] == [f"epoch-{epoch:04d}"]


# -- figures ----------------------------------------------------------------------------------------------------
def test_cooccurrence_rows_are_conditional_on_the_row_label_and_zero_for_a_label_that_never_occurs():
    from mmlnb_dist.recipes.clip.plots import cooccurrence

    y = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 1, 0, 0]])
    counts, normalised = cooccurrence(y)
    np.testing.assert_array_equal(counts, y.T @ y)
    expected = np.array([[1, 2 / 3, 2 / 3, 0], [2 / 3, 1, 1 / 3, 0], [1, 0.5, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(normalised, expected)


def test_the_per_label_f1_chart_refuses_a_value_count_other_than_the_labels():
    from mmlnb_dist.recipes.clip.plots import per_label_f1_figure

    fig, data = per_label_f1_figure({"val": [0.1, 0.2, 0.3], "test": [0.4, 0.5, 0.6]}, ["a", "b", "c"], 2)
    np.testing.assert_allclose([b.get_width() for b in fig.axes[0].patches], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    with pytest.raises(ValueError, match="test: 2 F1 values for 3 labels"):
        per_label_f1_figure({"val": [0.1, 0.2, 0.3], "test": [0.4, 0.5]}, ["a", "b", "c"], 2)


# -- selective unfreezing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "tiny-open_clip"])
def test_unfreezing_n_blocks_trains_the_last_n_of_each_tower_and_nothing_else(name):
    """unfreeze_blocks=2 of 3: blocks 1 and 2 of the image and the text tower train; block 0, the embeddings and
    the projections stay frozen."""
    from mmlnb_dist.recipes.clip.config import ClipTowersConfig
    from mmlnb_dist.recipes.clip.towers import build_towers

    towers = build_towers(ClipTowersConfig.model_validate({"name": name, "unfreeze_blocks": 2, "max_length": 16,
                                                           "tiny": {"layers": 3}}), image_size=32)
    assert len(towers.image_blocks) == len(towers.text_blocks) == 3
    last = {id(p) for blocks in (towers.image_blocks, towers.text_blocks) for b in blocks[1:] for p in b.parameters()}
    assert {id(p) for p in towers.parameters() if p.requires_grad} == last

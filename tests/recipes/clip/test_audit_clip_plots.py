"""Audit of a CLIP run's figures and config (recipes/clip/plots.py, config.py): the training split's label matrix
read from raw shards (unreadable label lists skipped, an empty split), the bars grouped on their label, the heatmap's
fixed 0..1 scale, and the config's defaults being the seed's model."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest


def _shard(path: Path, samples) -> Path:
    """A WebDataset tar: one `<key>.json` (+ `<key>.txt`) member per sample."""
    with tarfile.open(path, "w") as tar:
        for key, meta in samples:
            for ext, data in (("json", json.dumps(meta).encode()), ("txt", b"a caption")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


class _Shards:
    """What split_label_matrix reads of a ShardSet: its classes and each split's shard paths."""

    classes = ["fat", "necrosis", "tumour"]

    def __init__(self, splits):
        self.splits = splits

    def shards(self, split):
        return [(p, 0) for p in self.splits.get(split, [])]


def test_the_label_matrix_holds_every_readable_sample_of_the_split_in_order(tmp_path):
    """Samples without a label list, with an empty one or an unknown label are skipped (the loader skips them too);
    the other split's shards are not read."""
    from mmlnb_dist.recipes.clip.plots import split_label_matrix

    train = _shard(tmp_path / "train-000.tar", [
        ("a", {"labels": ["tumour", "fat"]}), ("b", {"labels": []}), ("c", {"slide_id": "s1"}),
        ("d", {"labels": ["necrosis"]}), ("e", {"labels": ["mystery"]}), ("f", {"labels": ["fat"]})])
    val = _shard(tmp_path / "val-000.tar", [("v", {"labels": ["necrosis", "tumour"]})])
    matrix = split_label_matrix(_Shards({"train": [train], "val": [val]}), "train")
    np.testing.assert_array_equal(matrix, [[1, 0, 1], [0, 1, 0], [1, 0, 0]])


def test_a_split_without_readable_samples_gives_an_empty_matrix_and_a_heatmap_of_zeros(tmp_path):
    from mmlnb_dist.recipes.clip.plots import cooccurrence_figure, split_label_matrix

    empty = _shard(tmp_path / "train-000.tar", [("a", {"slide_id": "s1"})])
    matrix = split_label_matrix(_Shards({"train": [empty]}), "train")
    assert matrix.shape == (0, 3)
    fig, data = cooccurrence_figure(matrix, _Shards.classes)
    np.testing.assert_array_equal(data["normalised"], np.zeros((3, 3)))
    assert fig.axes[0].images[0].get_clim() == (0, 1)  # one fixed scale: P(column | row) is a share


def test_each_labels_bars_are_centred_on_its_tick_one_per_split():
    from mmlnb_dist.recipes.clip.plots import per_label_f1_figure

    fig, _ = per_label_f1_figure({"val": [0.2, 0.4], "test": [0.6, 0.8]}, ["a", "b"], 3)
    ax = fig.axes[0]
    centres = [b.get_y() + b.get_height() / 2 for b in ax.patches]
    np.testing.assert_allclose(centres, [-0.2, 0.8, 0.2, 1.2])  # val above, test below each label's tick
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"] and ax.get_xlabel() == "F1 (top-3 prediction)"
    single, _ = per_label_f1_figure({"val": [0.5, 0.7]}, ["a", "b"], 1)
    np.testing.assert_allclose([b.get_y() + b.get_height() / 2 for b in single.axes[0].patches], [0, 1])


def test_the_config_defaults_are_the_seeds_model():
    """Seed 002: the last two blocks of both towers train, the embeddings are concatenated into a 4-layer MLP head
    (3 hidden of 512), top-3 prediction, the zero-shot prompt "A pathology image of [class]", tower lr 1e-5."""
    from mmlnb_dist.recipes.clip.config import ClipConfig

    cfg = ClipConfig()
    model = cfg.model
    assert model.towers.unfreeze_blocks == 2 and model.towers.max_length == 77 and model.fusion == "concat"
    assert model.head_widths == [512, 512, 512] and model.head_dropout == 0.0
    assert model.zero_shot_prompt.format(label="necrosis") == "A pathology image of necrosis"
    assert cfg.top_k == 3 and cfg.tower_lr == 1e-5 and cfg.pos_weight is None
    assert model.image_encoder == model.text_encoder == "clip" and model.image_encoder_trainable is None
    # the encoder baselines: ImageNet weights (the seed's ResNet-50), BERT's [CLS] state as the caption vector
    assert model.image_encoder_pretrained is True and model.text_encoder_pooling == "cls"


@pytest.mark.parametrize("section, data", [
    ("ClipConfig", {"top_k": 0}), ("ClipConfig", {"tower_lr": 0.0}), ("ClipModelConfig", {"head_dropout": 1.0}),
    ("ClipModelConfig", {"towers": {"max_length": 7}}), ("ClipModelConfig", {"towers": {"unfreeze_blocks": -1}})])
def test_config_values_out_of_range_are_refused(section, data):
    from pydantic import ValidationError

    from mmlnb_dist.recipes.clip import config

    with pytest.raises(ValidationError):
        getattr(config, section).model_validate(data)


def test_the_seeds_3_label_accuracy_is_a_metric_a_run_can_select(tmp_path):
    """Seed 002 reports the 1-, 2- and 3-label accuracies of the top-3 prediction: `at_least_3_of_top_k` is a metric
    name the best checkpoint can be chosen by."""
    from mmlnb_dist.recipes.clip.config import METRIC_NAMES
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    from support.clip import clip_config

    assert {f"at_least_{j}_of_top_k" for j in (1, 2, 3)} <= set(METRIC_NAMES)
    cfg = clip_config(tmp_path / "no-shards", tmp_path / "runs", "train.best_metric=at_least_3_of_top_k")
    ClipRecipe.check_config(cfg, world_size=1)

"""FusionRecipe.check refuses what would train on the wrong numbers, before any work (issue 11 items 8, 9):
a text-using fusion mode on shards without descriptions, and best-checkpoint selection on an AUROC that is
undefined for the validation split."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.data.build import SampleSpec, build_shards
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

from support.fusion import tiny_config
from support.shards import CLASSES, specs_for, write_patch_folder


def _shards(tmp: Path, describe: bool, val_labels=None) -> Path:
    src = write_patch_folder(tmp / "src", per_class=6, size=24)
    specs = specs_for(src, slides_per_class=3)
    if not describe:
        specs = [SampleSpec(s.key, s.label, s.image, s.slide_id) for s in specs]
    out = tmp / "shards"
    build = BuildConfig(max_samples_per_shard=5, val_fraction=0.34, image_format="png", image_size=24)
    build_shards(specs, out, build, CLASSES, progress=False)
    return out


def _check(shards: Path, tmp: Path, *extra: str) -> None:
    FusionRecipe.check(tiny_config(shards, tmp / "runs", "check", list(extra)), DistEnv())


@pytest.fixture(scope="module")
def undescribed(tmp_path_factory) -> Path:
    return _shards(tmp_path_factory.mktemp("undescribed"), describe=False)


@pytest.fixture(scope="module")
def described(tmp_path_factory) -> Path:
    return _shards(tmp_path_factory.mktemp("described"), describe=True)


@pytest.mark.parametrize("mode", ["prmf", "concat", "sum", "fixed_alpha", "text_only"])
def test_text_mode_on_shards_without_descriptions_is_a_config_error(undescribed, tmp_path, mode):
    with pytest.raises(ConfigError) as err:
        _check(undescribed, tmp_path, f"fusion.model.mode={mode}")
    message = str(err.value)
    assert "fusion.model.mode=image_only" in message and "describe" in message and str(undescribed) in message


def test_image_only_mode_on_shards_without_descriptions_passes(undescribed, tmp_path):
    _check(undescribed, tmp_path, "fusion.model.mode=image_only")


def test_text_mode_on_described_shards_passes(described, tmp_path):
    _check(described, tmp_path, "fusion.model.mode=prmf")


def test_manifest_without_the_description_flag_is_checked_on_the_samples(undescribed, tmp_path):
    """An older manifest without `has_descriptions`: the first train samples are read instead."""
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(undescribed, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["has_descriptions"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="fusion.model.mode=image_only"):
        _check(copy, tmp_path, "fusion.model.mode=prmf")


def test_best_metric_auroc_on_a_one_class_val_split_is_a_config_error(tmp_path):
    """AUROC of a val split holding one class is undefined (NaN): it cannot choose a checkpoint."""
    src = write_patch_folder(tmp_path / "src", per_class=10, size=24)
    # 10 UD, 1 PD, 1 D: a stratified 20% val gets 2 UD, and PD and D have no sample to spare for it.
    specs = [SampleSpec(s.key, s.label, s.image, description="text") for s in specs_for(src)
             if s.label == "UD" or int(s.key.rsplit("_", 1)[1]) < 1]
    out = tmp_path / "shards"
    build_shards(specs, out, BuildConfig(val_fraction=0.2, image_format="png", image_size=24), CLASSES,
                 progress=False)
    counts = json.loads((out / "manifest.json").read_text())["splits"]["val"]["class_counts"]
    assert sum(1 for n in counts.values() if n) == 1, counts  # the set-up: one class in val
    for metric in ("auroc", "kappa", "quadratic_kappa"):
        with pytest.raises(ConfigError, match=f"train.best_metric={metric}"):
            _check(out, tmp_path, f"train.best_metric={metric}")
    _check(out, tmp_path, "train.best_metric=balanced_accuracy")


@pytest.mark.parametrize("metric,values,best_epoch", [
    ("balanced_accuracy", [float("nan"), 0.5, 0.7, 0.6], 2),   # a NaN first evaluation must not stay the best
    ("balanced_accuracy", [0.5, float("nan"), 0.4], 0),       # nor win later
    ("loss", [float("nan"), 0.9, 0.3, 0.4], 2),
])
def test_an_undefined_metric_never_becomes_the_best_checkpoint(metric, values, best_epoch):
    recipe = FusionRecipe.__new__(FusionRecipe)  # only the selection rule, no run
    recipe.cfg = tiny_config(Path("/nonexistent"), Path("/nonexistent"), "r", [f"train.best_metric={metric}"])
    recipe.best = None
    for epoch, value in enumerate(values):
        if recipe.is_better(value):
            recipe.best = {"epoch": epoch, "value": value}
    assert recipe.best["epoch"] == best_epoch


def test_a_multi_label_shard_set_is_refused_before_training(tmp_path):
    """`train` with the fusion recipe on a shard set built with `--task multilabel` trained one class per patch
    and reported single-label metrics on it, silently; it is refused, naming the set and the recipe to use."""
    from support.clip import caption_shards

    shards = caption_shards(tmp_path, n=24, size=32)
    with pytest.raises(ConfigError) as err:
        _check(shards, tmp_path)
    message = str(err.value)
    assert "data.shards" in message and str(shards) in message and "multi-label" in message, message
    assert "clip-multilabel" in message, message


def test_register_name_without_an_mlflow_backend_is_refused_before_work(described, tmp_path):
    """It used to train the whole run and register nothing, silently (the clip recipe refused it; one check in
    `core.recipe.run` now serves every recipe)."""
    from mmlnb_dist.core.recipe import run

    cfg = tiny_config(described, tmp_path / "runs", "reg", ["tracking.register_name=nb-model", "train.epochs=1"])
    with pytest.raises(ConfigError, match="tracking.register_name") as err:
        run(FusionRecipe, cfg, DistEnv())
    assert "mlflow" in str(err.value) and "register --run" not in str(err.value)
    assert not (tmp_path / "runs" / "reg" / "checkpoints").exists()

"""Extracted image features depend on the images only: a shard set rebuilt with other descriptions (the VLM-fusion
flow trains on `describe`'s output, same keys and image bytes, new `txt`) reuses the features extracted from the
first one, while a set whose images, keys or splits differ is refused naming what differs."""
from __future__ import annotations

import json
import shutil

import pytest

from support.fusion import tiny_config

FROZEN = ["train.epochs=1", "fusion.curriculum.ramp_start=0", "fusion.curriculum.ramp_end=1",
          "fusion.curriculum.phases=[{start_epoch: 0, train_image_encoder: false, train_text_encoder: false}]"]


def build(src, out, descriptions=None, val_fraction=0.25):
    from mmlnb_dist.config import BuildConfig
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import CLASSES

    cfg = BuildConfig(max_samples_per_shard=20, val_fraction=val_fraction, image_format="png", image_size=48, seed=0)
    build_shards(collect_samples(src, CLASSES, descriptions), out, cfg, CLASSES, progress=False)
    return out


def redescribed(src, path):
    """descriptions.jsonl with every description changed (what `describe` or another VLM produces)."""
    lines = [json.loads(x) for x in (src / "descriptions.jsonl").read_text().splitlines() if x.strip()]
    path.write_text("".join(json.dumps({**x, "description": "Re-described. " + x["description"]}) + "\n"
                            for x in lines))
    return path


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.data.synthetic import make_synthetic_dataset
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    root = tmp_path_factory.mktemp("redesc")
    src = root / "src"
    make_synthetic_dataset(src, n=60, size=48, n_slides=12, seed=0)
    first = build(src, root / "shards")
    feats = root / "feat_tiny"
    extract_features(ImageEncoderConfig(name="tiny", pretrained=False), first, feats, env=DistEnv(), seed=0,
                     batch_size=16, image_size=48, progress=False)
    return {"root": root, "src": src, "first": first, "features": feats,
            "described": build(src, root / "shards_desc2", redescribed(src, root / "desc2.jsonl"))}


def config(shards, features, tmp_path, name="r"):
    return tiny_config(shards, tmp_path / "runs", name, [*FROZEN, "data.loader.image_size=48",
                                                         f"fusion.image_features={features}"])


def test_features_train_a_run_on_a_redescribed_set_of_the_same_images(sets, tmp_path):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    assert ShardSet.open(sets["described"]).digest != ShardSet.open(sets["first"]).digest  # descriptions differ
    result = run(FusionRecipe, config(sets["described"], sets["features"], tmp_path))
    assert result["val/num_samples"] == ShardSet.open(sets["described"]).num_samples("val")


def test_a_set_with_one_image_changed_is_refused_naming_the_key(sets, tmp_path):
    from PIL import Image

    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import FeaturesError
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    src = tmp_path / "src"
    shutil.copytree(sets["src"], src)
    changed = sorted((src / "PD").glob("*.png"))[0]
    img = Image.open(changed).convert("RGB")
    img.putpixel((0, 0), (0, 255, 0))
    img.save(changed)
    other = build(src, tmp_path / "shards_changed")
    with pytest.raises(FeaturesError, match=rf"(?s)image differs.*{changed.stem}.*extract"):
        FusionRecipe.check(config(other, sets["features"], tmp_path), DistEnv())


def test_a_set_split_otherwise_is_refused(sets, tmp_path):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import FeaturesError
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    other = build(sets["src"], tmp_path / "shards_split", val_fraction=0.4)
    with pytest.raises(FeaturesError, match=r"(?s)in another split"):
        FusionRecipe.check(config(other, sets["features"], tmp_path), DistEnv())


def test_a_folder_without_an_images_record_fits_its_own_set_only_and_says_extract_again(sets, tmp_path):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import FeaturesError
    from mmlnb_dist.features.store import INDEX_FILE
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    old = tmp_path / "old_features"
    shutil.copytree(sets["features"], old)
    index = json.loads((old / INDEX_FILE).read_text())
    index.pop("images_sha256")  # what an extraction before the images record wrote
    (old / INDEX_FILE).write_text(json.dumps(index))
    FusionRecipe.check(config(sets["first"], old, tmp_path), DistEnv())  # its own set: fine
    with pytest.raises(FeaturesError, match=r"(?s)another shard set.*extract.*again"):
        FusionRecipe.check(config(sets["described"], old, tmp_path), DistEnv())


def test_describe_s_output_of_the_extracted_set_fits_without_reading_its_images(sets, monkeypatch):
    """`describe` keeps keys, splits and image bytes and records the set it described: its output fits the
    features of that set from its manifest alone (every rank used to read and hash every image of the set)."""
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.data.map import map_shard_set
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.features import store

    first = ShardSet.open(sets["first"])
    out = sets["root"] / "described-by-vlm"
    made_by = {"describe": {"source_manifest_sha256": first.digest}}
    map_shard_set(first, out, lambda samples: [{"txt": "a generated description"} for _ in samples], env=DistEnv(),
                  batch_size=8, provenance=made_by, progress=False, has_descriptions=True)

    def no_full_read(*args, **kwargs):
        raise AssertionError("every image of the shard set was read")

    monkeypatch.setattr(store, "shard_set_images", no_full_read)
    store.check_shards_fit(sets["features"], ShardSet.open(out))
    with pytest.raises(AssertionError, match="every image"):  # another set is still compared image by image
        store.check_shards_fit(sets["features"], ShardSet.open(sets["described"]))


def test_a_run_reads_the_images_of_a_redescribed_set_once(sets, tmp_path, monkeypatch):
    """`check` compares the set image by image before any work; setup's look at the built encoder does not read
    every image again (the run holds both folders' read locks in between), and no process-wide memory does it."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.features import store
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    reads = []
    real = store.shard_set_images
    monkeypatch.setattr(store, "shard_set_images", lambda shards, *a, **k: reads.append(shards.root) or real(shards))
    run(FusionRecipe, config(sets["described"], sets["features"], tmp_path))
    assert reads == [sets["described"]]

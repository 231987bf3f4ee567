"""`predict` says when the descriptions it feeds a text-reading model are not from the writer of the training
descriptions. A model trained on what the VLM wrote, fed a shard set's reference (e.g. pathologist) text, scores
on words it never saw at training and that a new patch will not have: the numbers look better than the model
is. The export records who wrote its training text; `predict` compares each input's writer with it."""
from __future__ import annotations

import json
import os

import pytest

from mmlnb_dist.cli import main

from support.fusion import make_shards, tiny_config


@pytest.fixture(scope="module")
def vlm_trained(tmp_path_factory):
    """A fusion model trained on shards the base tiny VLM described (no adapter), registered in a SQLite store."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.pyfunc_model import register_run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe
    from mmlnb_dist.recipes.vlm.describe import run_describe

    root = tmp_path_factory.mktemp("textsrc")
    shards = make_shards(root, n=45, size=32)
    cfg = tiny_config(shards, root / "runs", "src", ["tracking.backends=[mlflow]", "train.epochs=1",
                                                      "data.loader.image_size=32", "vlm.generation.max_new_tokens=4"])
    described = root / "described"
    run_describe(cfg, "tiny", None, shards, described, progress=False)
    cfg.data.shards = described
    result = run(FusionRecipe, cfg)
    uri = f"sqlite:///{(root / 'runs' / 'mlflow.db').resolve()}"
    run_id = json.loads((root / "runs" / "src" / "tracking" / "train.json").read_text())["run_id"]
    register_run(run_id, "nb-src", alias="champion", tracking_uri=uri, metric="best/val/balanced_accuracy",
                 mode="max")
    return {"root": root, "reference": shards, "described": described, "uri": uri, "result": result}


def _predict(t, *inputs, extra=()):
    return main(["predict", "--model", "models:/nb-src@champion", *map(str, inputs), "--split", "val",
                 "--out", str(t["root"] / "preds.csv"), "--uri", t["uri"], *extra])


def test_the_export_records_who_wrote_its_training_descriptions(vlm_trained):
    config = json.loads((vlm_trained["root"] / "runs" / "src" / "export" / "model_config.json").read_text())
    assert config["descriptions_written_by"]["model"] == "tiny"
    assert config["descriptions_written_by"]["adapter_sha256"] is None


def test_reference_text_fed_to_a_model_trained_on_vlm_text_is_named(vlm_trained, capsys):
    assert _predict(vlm_trained, vlm_trained["reference"]) == 0
    err = capsys.readouterr().err
    assert "trained on descriptions written by the VLM tiny (no adapter)" in err, err
    n_val = json.loads((vlm_trained["reference"] / "manifest.json").read_text())["splits"]["val"]["num_samples"]
    assert f"{n_val} of {n_val} images here carry descriptions from the shard set itself" in err, err
    assert "--vlm tiny" in err, err


def test_the_training_writer_s_text_passes_without_a_word(vlm_trained, capsys):
    import mlflow

    exported = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    stores = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    assert _predict(vlm_trained, vlm_trained["described"]) == 0
    assert "trained on descriptions written by" not in capsys.readouterr().err
    # --uri is this command's store only: it used to become the process's (a later client without a registry URI
    # listed this store's models) and its subprocesses' (MLFLOW_* variables)
    assert {k: os.environ.get(k) for k in exported} == exported
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == stores


def test_images_described_by_the_training_writer_pass_without_a_word(vlm_trained, tmp_path, capsys):
    from mmlnb_dist.data.reader import iter_shard_samples

    tar = next(iter(sorted(vlm_trained["reference"].glob("val-*.tar"))))
    sample = next(iter_shard_samples(tar))
    ext = next(k for k in ("png", "jpg") if k in sample)
    image = tmp_path / f"patch.{ext}"
    image.write_bytes(sample[ext])
    # the training run's config: its vlm settings (tiny_vision, tiny_seed) made the tiny VLM that wrote its text
    code = main(["predict", "--model", "models:/nb-src@champion", str(image), "--out", str(tmp_path / "p.csv"),
                 "--uri", vlm_trained["uri"], "--vlm", "tiny",
                 "--config", str(vlm_trained["root"] / "runs" / "src" / "config.yaml")])
    err = capsys.readouterr().err
    assert code == 0 and "trained on descriptions written by" not in err, err


def test_images_described_by_another_tiny_vlm_are_named_with_what_differs(vlm_trained, tmp_path, capsys):
    """`--vlm tiny` without the training config builds the default tiny VLM (another vision tower than the
    profile's): another writer, and the warning says which settings tell the two apart."""
    from mmlnb_dist.data.reader import iter_shard_samples

    sample = next(iter_shard_samples(next(iter(sorted(vlm_trained["reference"].glob("val-*.tar"))))))
    ext = next(k for k in ("png", "jpg") if k in sample)
    (tmp_path / f"patch.{ext}").write_bytes(sample[ext])
    code = main(["predict", "--model", "models:/nb-src@champion", str(tmp_path / f"patch.{ext}"), "--out",
                 str(tmp_path / "p.csv"), "--uri", vlm_trained["uri"], "--vlm", "tiny"])  # tiny_vision: random
    err = capsys.readouterr().err
    assert code == 0, err
    trained = "trained on descriptions written by the VLM tiny (no adapter) of tiny_seed=0, tiny_vision=distilled"
    assert trained in err, err
    assert "written by the VLM tiny (no adapter) of tiny_seed=0, tiny_vision=random" in err, err


def test_with_the_vlm_describing_a_labels_table_gives_the_slides(vlm_trained, tmp_path, capsys):
    """Patches with the usual `file,label,slide_id` table and `--vlm` to describe them: the table was refused for
    having no description column, so the predictions had no slide ids and no per-slide aggregates."""
    import csv

    from mmlnb_dist.data.reader import iter_shard_samples

    rows = []
    for i, sample in enumerate(s for tar in sorted(vlm_trained["reference"].glob("val-*.tar"))
                               for s in iter_shard_samples(tar)):
        if i == 4:
            break
        ext = next(k for k in ("png", "jpg") if k in sample)
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"p{i}.{ext}").write_bytes(sample[ext])
        rows.append({"file": f"p{i}.{ext}", "label": "UD", "slide_id": f"S{i % 2}"})
    with open(tmp_path / "in" / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "label", "slide_id"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "p.csv"
    code = main(["predict", "--model", "models:/nb-src@champion", str(tmp_path / "in"), "--out", str(out),
                 "--uri", vlm_trained["uri"], "--vlm", "tiny", "--descriptions", str(tmp_path / "in" / "labels.csv")])
    err = capsys.readouterr().err
    assert code == 0, err
    predicted = list(csv.DictReader(open(out)))
    assert sorted(r["slide_id"] for r in predicted) == ["S0", "S0", "S1", "S1"]
    assert all(r["description"] for r in predicted)  # the VLM's text
    slides = list(csv.DictReader(open(tmp_path / "p.slides.csv")))
    assert [(r["slide_id"], r["n_patches"]) for r in slides] == [("S0", "2"), ("S1", "2")]
    # without --vlm the table must hold the text
    code = main(["predict", "--model", "models:/nb-src@champion", str(tmp_path / "in"), "--out", str(out),
                 "--uri", vlm_trained["uri"], "--descriptions", str(tmp_path / "in" / "labels.csv")])
    assert code == 2 and "no 'description' column" in capsys.readouterr().err


def test_evaluate_names_shards_whose_text_another_writer_wrote(vlm_trained, capsys):
    export = vlm_trained["root"] / "runs" / "src" / "export"
    assert main(["evaluate", "--export", str(export), "--split", "val"]) == 0  # the run's own (described) shards
    assert "trained on descriptions written by" not in capsys.readouterr().err
    assert main(["evaluate", "--export", str(export), "--split", "val",
                 f"data.shards={vlm_trained['reference']}"]) == 0
    err = capsys.readouterr().err
    assert "trained on descriptions written by the VLM tiny (no adapter)" in err, err
    assert f"the shards {vlm_trained['reference']} carry descriptions from the shard set itself" in err, err
    # `evaluate` has no --vlm: its remedy is the describe command, then evaluate on what it writes
    ref = vlm_trained["reference"]
    assert "give --vlm" not in err, err
    assert f"mmlnb-dist describe --vlm tiny --shards {ref} --out {ref}-described" in err, err
    assert f"then evaluate with data.shards={ref}-described" in err, err


def test_a_training_export_given_as_the_model_names_the_way_to_predict_with_it(vlm_trained, capsys):
    """`--model runs/NAME/export` (the folder `evaluate --export` takes) is not an MLflow model: the error said
    only that MLflow found no MLmodel file in it."""
    export = vlm_trained["root"] / "runs" / "src" / "export"
    code = main(["predict", "--model", str(export), str(vlm_trained["described"]), "--out",
                 str(vlm_trained["root"] / "x.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "training export" in err, err
    assert f"mmlnb-dist register --run {export.parent}" in err and "models:/" in err and "evaluate --export" in err


@pytest.fixture(scope="module")
def adapter_trained(tmp_path_factory):
    """A fusion model trained on shards a fine-tuned tiny VLM (a random LoRA adapter beside its run's config, as
    finetune-vlm leaves it) described, registered as nb-adapter; and another adapter."""
    from mmlnb_dist.config import save_config
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.pyfunc_model import register_run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe
    from mmlnb_dist.recipes.vlm.describe import run_describe

    from support.vlm import write_random_adapter

    root = tmp_path_factory.mktemp("adaptersrc")
    shards = make_shards(root, n=45, size=32)
    cfg = tiny_config(shards, root / "runs", "src", ["tracking.backends=[mlflow]", "train.epochs=1",
                                                      "data.loader.image_size=32", "vlm.generation.max_new_tokens=4",
                                                      "vlm.tiny_vision=random", f"vlm.cache_dir={root / 'tiny'}"])
    adapters = {}
    for name, seed in (("vlm", 1), ("other", 2)):
        adapters[name] = write_random_adapter(cfg.vlm, root / name / "adapter", seed, cfg.vlm.max_pixels)
        save_config(cfg, root / name / "config.yaml")
    described = root / "described"
    run_describe(cfg, "tiny", str(adapters["vlm"]), shards, described, progress=False)
    cfg.data.shards = described
    run(FusionRecipe, cfg)
    uri = f"sqlite:///{(root / 'runs' / 'mlflow.db').resolve()}"
    run_id = json.loads((root / "runs" / "src" / "tracking" / "train.json").read_text())["run_id"]
    register_run(run_id, "nb-adapter", alias="champion", tracking_uri=uri, metric="best/val/balanced_accuracy",
                 mode="max")
    return {"root": root, "reference": shards, "uri": uri, "cfg": cfg, **adapters}


def test_images_described_with_the_training_adapter_pass_without_a_word(adapter_trained, tmp_path, capsys):
    """The printed `predict ... --vlm tiny --adapter ADAPTER` line, given the adapter that wrote the training text,
    warned that the text came from another adapter: describe and predict digested an adapter two ways (every file
    of its folder against the weights file alone), so no adapter ever matched."""
    from mmlnb_dist.data.reader import iter_shard_samples

    t = adapter_trained
    sample = next(iter_shard_samples(next(iter(sorted(t["reference"].glob("val-*.tar"))))))
    ext = next(k for k in ("png", "jpg") if k in sample)
    image = tmp_path / f"patch.{ext}"
    image.write_bytes(sample[ext])

    def predict(adapter):
        code = main(["predict", "--model", "models:/nb-adapter@champion", str(image), "--out",
                     str(tmp_path / "p.csv"), "--uri", t["uri"], "--vlm", "tiny", "--adapter", str(adapter)])
        return code, capsys.readouterr().err

    code, err = predict(t["vlm"])
    assert code == 0 and "trained on descriptions written by" not in err, err
    code, err = predict(t["other"])
    assert code == 0 and "trained on descriptions written by the VLM tiny (adapter sha256" in err, err


def test_a_vlm_merged_with_the_training_adapter_writes_as_that_adapter(adapter_trained, tmp_path, capsys):
    """`export-vlm` folds the adapter into its base (the model users serve); predicting with `--vlm MERGED` warned
    that the text came from another writer ("no adapter"), and read the default prompt and image size instead of
    the fine-tuning run's. The merged folder now names its adapter, and describe records the same digest."""
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm.describe import run_describe
    from mmlnb_dist.recipes.vlm.merge import merge_and_export
    from mmlnb_dist.recipes.vlm.model import adapter_sha256

    t, v = adapter_trained, adapter_trained["cfg"].vlm
    merged = merge_and_export("tiny", t["vlm"], tmp_path / "merged", min_pixels=v.min_pixels,
                              max_pixels=v.max_pixels, cache_dir=v.cache_dir, tiny_vision=v.tiny_vision)
    sample = next(iter_shard_samples(next(iter(sorted(t["reference"].glob("val-*.tar"))))))
    ext = next(k for k in ("png", "jpg") if k in sample)
    image = tmp_path / f"patch.{ext}"
    image.write_bytes(sample[ext])
    code = main(["predict", "--model", "models:/nb-adapter@champion", str(image), "--out", str(tmp_path / "p.csv"),
                 "--uri", t["uri"], "--vlm", str(merged)])
    err = capsys.readouterr().err
    assert code == 0 and "trained on descriptions written by" not in err, err

    run_describe(t["cfg"], str(merged), None, t["reference"], tmp_path / "described", progress=False)
    made = ShardSet.open(tmp_path / "described").provenance["describe"]
    assert made["adapter"] is None and made["adapter_sha256"] == adapter_sha256(t["vlm"])

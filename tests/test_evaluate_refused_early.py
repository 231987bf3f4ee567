"""`evaluate --split test` of a model on a shard set without a test split exited 2 ("has no 'test' samples") but had
already created `<run.name>-evaluate-test/` (the tracked evaluation's folder, locked for the command): a refused
command left an empty folder behind, where docs/reliability.md promises refusal before any folder is created. The
split is now checked before the folder and its lock exist, for both recipes with an `evaluate` (fusion, clip)."""
from __future__ import annotations

from mmlnb_dist.cli import main

from support import clip, fusion


def _refused_without_a_folder(export: str, runs, capsys) -> None:
    capsys.readouterr()
    code = main(["evaluate", "--export", export, "--split", "test", "--json", "tracking.backends=[stdout, mlflow]"])
    err = capsys.readouterr().err
    assert code == 2 and "has no 'test' samples" in err, err
    assert not list(runs.glob("*-evaluate-test")), sorted(p.name for p in runs.iterdir())


def test_a_fusion_evaluation_of_a_missing_split_is_refused_before_its_folder_exists(tmp_path, capsys):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = fusion.make_shards(tmp_path, n=45, size=32)  # train and val only
    cfg = fusion.tiny_config(shards, tmp_path / "runs", "ev", ["train.epochs=1", "data.loader.image_size=32"])
    _refused_without_a_folder(run(FusionRecipe, cfg)["export_dir"], tmp_path / "runs", capsys)


def test_a_clip_evaluation_of_a_missing_split_is_refused_before_its_folder_exists(tmp_path, capsys):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    shards = clip.caption_shards(tmp_path, n=48, size=32)  # train and val only
    cfg = clip.clip_config(shards, tmp_path / "runs", "train.epochs=1", name="ev")
    _refused_without_a_folder(run(recipe_class("clip"), cfg)["export_dir"], tmp_path / "runs", capsys)

"""`train --config clip-demo fusion.model.mode=concat` trained the CLIP recipe and ignored the override without a
word: the fusion section is not what train.recipe=clip reads. An override of a recipe section the run never reads
is refused before any work, naming the keys and the sections the recipe does read (as `tune` refuses a search
space of keys its trial never reads)."""
from __future__ import annotations

from mmlnb_dist.recipes import unread_keys

from support.cli import run_cli


def test_keys_of_another_recipes_section_are_unread():
    keys = ["fusion.model.mode", "train.lr", "clip.model.towers.name", "vlm.lora.r", "data.shards", "run.name"]
    assert unread_keys(keys, "clip") == ["fusion.model.mode", "vlm.lora.r"]
    assert unread_keys(keys, "fusion") == ["clip.model.towers.name", "vlm.lora.r"]
    assert unread_keys(keys, "not-a-recipe-in-the-table") == []


def test_train_refuses_an_override_its_recipe_never_reads(tmp_path):
    code, _, err = run_cli(["train", "--config", "clip-demo", "fusion.model.mode=concat",
                            f"data.shards={tmp_path / 'none'}", f"run.output_dir={tmp_path}"])
    assert code == 2
    assert "train.recipe=clip never reads fusion.model.mode" in err and "clip.*" in err, err
    assert not any(tmp_path.iterdir())


def test_an_override_the_recipe_reads_goes_on_to_the_next_check(tmp_path):
    code, _, err = run_cli(["train", "--config", "cpu-demo", "fusion.model.mode=concat",
                            f"data.shards={tmp_path / 'none'}", f"run.output_dir={tmp_path}"])
    assert code == 2 and "never reads" not in err and "shard folder not found" in err, err

"""`moved_data` and `check_resume_config(moved=...)`: a resume may change the folder a shard set is named by only
when the set recorded at the old folder has the same manifest digest in every split at the new one. A set with no
recorded digests, another split, or another digest is not taken for moved; moving the data allows that key alone
(a changed learning rate is still refused)."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.recipe import check_resume_config, moved_data
from mmlnb_dist.core.tracking.lineage import record_datasets
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe


def _specs(folder, digest="d" * 64, splits=("train", "val")):
    return [{"name": f"shards:{s}", "source": str(folder), "context": s, "profile": {"manifest_sha256": digest}}
            for s in splits]


def test_only_the_same_digest_in_every_split_is_taken_for_moved(tmp_path):
    old, new = tmp_path / "a" / "shards", tmp_path / "b" / "shards"
    record_datasets(tmp_path / "run", "train", _specs(old))
    assert moved_data(tmp_path / "run", {"train": _specs(new)}) == {(str(old), str(new))}
    assert moved_data(tmp_path / "run", {"train": _specs(new, digest="e" * 64)}) == set()
    assert moved_data(tmp_path / "run", {"train": _specs(new, splits=("train",))}) == set()
    assert moved_data(tmp_path / "none", {"train": _specs(new)}) == set()  # nothing recorded
    record_datasets(tmp_path / "old", "train", _specs(old, digest=None))
    assert moved_data(tmp_path / "old", {"train": _specs(new, digest=None)}) == set()  # no digests to compare


def _cfg(tmp_path, shards, *overrides):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r", f"data.shards={shards}",
                                    *overrides])


def test_a_moved_folder_allows_its_key_alone(tmp_path):
    old, new = tmp_path / "a" / "shards", tmp_path / "b" / "shards"
    cfg = _cfg(tmp_path, old)
    save_config(cfg, cfg.run.dir / "config.yaml")
    moved = {(str(old), str(new))}
    with pytest.raises(UserError, match=r"data\.shards: "):  # not known to be the same data
        check_resume_config(_cfg(tmp_path, new, "run.resume=true"), cfg.run.dir, FusionRecipe, record=False)
    check_resume_config(_cfg(tmp_path, new, "run.resume=true"), cfg.run.dir, FusionRecipe, record=False, moved=moved)
    with pytest.raises(UserError, match=r"train\.lr: ") as refused:
        check_resume_config(_cfg(tmp_path, new, "run.resume=true", "train.lr=0.5"), cfg.run.dir, FusionRecipe,
                            record=False, moved=moved)
    assert "data.shards" not in str(refused.value)
    with pytest.raises(UserError, match=r"data\.shards: "):  # moved data, but the config names a third folder
        check_resume_config(_cfg(tmp_path, tmp_path / "c", "run.resume=true"), cfg.run.dir, FusionRecipe,
                            record=False, moved=moved)


def test_where_the_run_folder_lies_may_change_and_what_it_trains_may_not(tmp_path):
    cfg = _cfg(tmp_path, tmp_path / "shards")
    save_config(cfg, cfg.run.dir / "config.yaml")
    moved = load_config("cpu-demo", [f"run.output_dir={tmp_path}/elsewhere", "run.name=r2", "run.resume=true",
                                     f"data.shards={tmp_path / 'shards'}"])
    check_resume_config(moved, cfg.run.dir, FusionRecipe, record=False)
    with pytest.raises(UserError, match=r"run\.seed: 0 -> 1"):
        check_resume_config(moved.model_copy(update={"run": moved.run.model_copy(update={"seed": 1})}),
                            cfg.run.dir, FusionRecipe, record=False)

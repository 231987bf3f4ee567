"""Which search space `tune` reads. The default space was the relative path `tune/spaces/curriculum.yaml`: from any
folder but a source checkout, `mmlnb-dist tune --config cpu-demo` stopped with "search space file not found", and
the spaces were not in the installed package at all. And every trial searched the fusion curriculum by default,
also a CLIP trial, which never reads those keys: its trials trained one model over and over, and the "best
config" was noise. Now the spaces ship with the package and resolve by name from any folder, each trial kind
searches its own space by default, and a space whose keys the trial never reads is refused before Ray starts."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_spaces_are_found_from_any_folder(tmp_path, monkeypatch):
    from mmlnb_dist.tuning.space import SPACES_DIR, SpaceError, load_space, resolve_space, shipped_spaces

    assert shipped_spaces() == ["clip", "curriculum", "joint", "lora", "optimisation"]
    assert sorted(p.name for p in (ROOT / "tune" / "spaces").glob("*.yaml")) == \
        [f"{name}.yaml" for name in shipped_spaces()]  # the checkout's tune/spaces is the package's
    monkeypatch.chdir(tmp_path)
    for given in ("tune/spaces/clip.yaml", "clip", "clip.yaml", Path("tune/spaces/clip.yaml")):
        assert resolve_space(given) == SPACES_DIR / "clip.yaml", given
    assert load_space(resolve_space("curriculum"))
    (tmp_path / "clip.yaml").write_text("params:\n  train.lr: {grid: [1.0e-3]}\n")
    assert resolve_space("clip.yaml") == Path("clip.yaml")  # a file of the user's wins over a shipped name
    with pytest.raises(SpaceError, match="search space file nosuch not found .*shipped spaces: clip, curriculum, "
                                         "joint, lora, optimisation"):
        resolve_space("nosuch")
    with pytest.raises(SpaceError, match="not found"):
        resolve_space("elsewhere/clip.yaml")  # a path that names another folder is the user's, not ours


def test_each_trial_searches_its_own_space_by_default():
    from mmlnb_dist.recipes import RECIPES
    from mmlnb_dist.tuning.checks import default_space
    from mmlnb_dist.tuning.space import shipped_spaces

    assert [default_space(r) for r in ("fusion", "clip", "vlm", "vlm-fusion", "my.module:Recipe")] == \
        ["curriculum", "clip", "lora", "joint", "curriculum"]
    assert all(spec.tune_space in shipped_spaces() for spec in RECIPES.values())  # every table recipe has one


@pytest.mark.parametrize("recipe, space, unread", [
    ("clip", "curriculum", "fusion.curriculum.start"),
    ("fusion", "lora", "vlm.lora.r"),
    ("fusion", "clip", "clip.tower_lr"),
])
def test_a_space_the_trial_never_reads_is_refused_before_ray_starts(recipe, space, unread, tmp_path):
    from mmlnb_dist.tuning.driver import run_search
    from mmlnb_dist.tuning.space import SpaceError

    cfg = load_config("clip-multilabel" if recipe == "clip" else "cpu-demo",
                      [f"tune.recipe={recipe}", f"run.output_dir={tmp_path}", f"data.shards={tmp_path / 'none'}"])
    with pytest.raises(SpaceError, match=f"tune.recipe={recipe} never reads .*{unread}"):
        run_search(cfg, space)
    assert not (tmp_path / "tune").exists()


def test_the_pipeline_trial_reads_the_vlm_and_fusion_keys():
    from mmlnb_dist.tuning.checks import check_space_is_read
    from mmlnb_dist.tuning.space import load_space, resolve_space

    check_space_is_read(load_space(resolve_space("joint")), "vlm-fusion", "joint")  # LoRA and curriculum: read
    check_space_is_read(load_space(resolve_space("lora")), "my.module:Recipe", "lora")  # outside the table: its own

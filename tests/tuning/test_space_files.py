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


def test_ray_samples_the_epochs_a_trial_trains_with_for_a_scaled_key():
    """`scale: epochs` keys reached Ray as fractions: its trial table and "Current best trial" line showed
    `phases.1.start_epoch 0.153` for a trial whose phase 1 started at epoch 1, and a searcher (Optuna) modelled a
    continuous range whose values mostly trained the same epochs. Ray now samples whole epochs (the range's ends
    times `train.epochs`, rounded, at least 1), and a trial applies them as they are."""
    from mmlnb_dist.tuning.space import apply_params, epochs_of, load_space, resolve_space, to_tune_space

    space = load_space(resolve_space("curriculum"))  # ramp_start: {uniform: [0.15, 0.35], scale: epochs}
    ramp = to_tune_space(space, "random", epochs=9)["fusion.curriculum.ramp_start"]
    assert {ramp.sample() for _ in range(300)} == {1, 2, 3}  # 0.15 x 9 = 1.35 -> 1, 0.35 x 9 = 3.15 -> 3
    start = to_tune_space(space, "random", epochs=9)["fusion.curriculum.start"]  # not scaled: as it was
    assert all(0.1 <= v <= 0.6 and isinstance(v, float) for v in (start.sample() for _ in range(50)))
    assert epochs_of(space["fusion.curriculum.ramp_start"], 0.35, 9) == 3
    assert epochs_of(space["fusion.curriculum.start"], 0.35, 9) == 0.35

    scaled = {"fusion.curriculum.ramp_start": {"grid": [0.25, 0.5, 0.52], "scale": "epochs"},
              "fusion.curriculum.ramp_end": {"loguniform": [0.5, 1.0], "scale": "epochs"},
              "fusion.curriculum.phases.1.start_epoch": {"quniform": [0.0, 0.5, 0.25], "scale": "epochs"}}
    grid = to_tune_space({k: scaled[k] for k in ["fusion.curriculum.ramp_start"]}, "grid", epochs=8)
    assert grid["fusion.curriculum.ramp_start"] == {"grid_search": [2, 4]}  # 0.5 and 0.52 both train 4
    sampled = to_tune_space(scaled, "random", epochs=8)
    assert {sampled["fusion.curriculum.ramp_end"].sample() for _ in range(300)} == {4, 5, 6, 7, 8}
    assert {sampled["fusion.curriculum.phases.1.start_epoch"].sample() for _ in range(300)} == {1, 2, 4}

    base = load_config(ROOT / "launch" / "profiles" / "cpu-demo.yaml").model_dump(mode="json")
    cfg, applied = apply_params(base, {"fusion.curriculum.ramp_start": 2}, space)
    assert applied == {"fusion.curriculum.ramp_start": 2} and cfg["fusion"]["curriculum"]["ramp_start"] == 2
    # a search started before Ray sampled epochs, resumed: its trials still carry fractions
    assert apply_params(base, {"fusion.curriculum.ramp_start": 0.35}, space)[1] == {"fusion.curriculum.ramp_start": 3}

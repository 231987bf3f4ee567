"""Search-space parsing and sampling guards found by a mutation audit of `tuning/space.py`: each malformed
distribution is refused when the space is read (before Ray starts), a randint's exclusive high end is never
checked as a value, ordering constraints between two keys are checked in pairs, and Ray's param space samples
exactly the values (and the distribution) the space file names. No Ray instance is started: Ray's sample domains
are drawn from directly."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmlnb_dist.config import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base():
    """The cpu-demo config as the driver hands it to `load_space` (9 epochs, ramp 3..6, phases at 0, 3, 6)."""
    return load_config(ROOT / "launch" / "profiles" / "cpu-demo.yaml").model_dump(mode="json")


def _space(tmp_path, *lines):
    path = tmp_path / "space.yaml"
    path.write_text("params:\n" + "".join(f"  {line}\n" for line in lines))
    return path


@pytest.mark.parametrize("line, says", [
    ("train.lr: {uniform: [1.0e-4, 1.0e-3], choice: [1.0e-3]}", r"'train\.lr' needs exactly one of"),
    ("train.lr: {uniform: [1.0e-4, 1.0e-3], step: 2}", r"'train\.lr' has unknown fields \['step'\]"),
    ("fusion.curriculum.ramp_start: {uniform: [0.1, 0.3], scale: steps}", r"scale must be 'epochs'"),
    ("fusion.curriculum.schedule: {choice: []}", r"choice needs a non-empty list"),
    ("train.lr: {grid: []}", r"grid needs a non-empty list"),
    ("train.global_batch_size: {quniform: [16, 64]}", r"quniform needs \[low, high, q\] numbers"),
    ("train.lr: {uniform: [true, 2.0]}", r"uniform needs \[low, high\] numbers"),
    ("train.global_batch_size: {randint: [16.0, 65]}", r"randint needs integer ends"),
    ("train.lr: {uniform: [1.0e-3, 1.0e-3]}", r"needs low < high"),
    ("train.lr: {loguniform: [0.0, 1.0e-3]}", r"loguniform needs a positive low end"),
    # a Literal of whole numbers is an integer field too (DeepSpeed's ZeRO stage 0-3)
    ("distributed.zero_stage: {uniform: [0, 3]}", r"'distributed\.zero_stage' takes integers.*randint: \[0, 4\]"),
])
def test_a_malformed_distribution_is_refused_when_the_space_is_read(tmp_path, line, says):
    """Each of these reached Ray (or every trial) before: Ray would sample an empty choice, a zero-width range, a
    log of 0, a fractional ZeRO stage; or the space silently dropped what the user wrote (a second distribution,
    an unknown field, a scale other than epochs)."""
    from mmlnb_dist.tuning.space import SpaceError, load_space

    with pytest.raises(SpaceError, match=says):
        load_space(_space(tmp_path, line))


def test_a_randints_exclusive_high_end_is_not_checked_as_a_value(tmp_path, base):
    """randint [0, 4] samples 0..3, every one a valid ZeRO stage: the check must try 3, not 4 (which Ray never
    samples and the config refuses), or a valid space is refused."""
    from mmlnb_dist.tuning.space import load_space, range_ends, to_tune_space

    assert range_ends({"randint": [0, 4]}) == [("low end", 0), ("high end", 3)]
    assert range_ends({"uniform": [0.1, 0.5]}) == [("low end", 0.1), ("high end", 0.5)]
    space = load_space(_space(tmp_path, "distributed.zero_stage: {randint: [0, 4]}"), base)
    stage = to_tune_space(space, "random", 9)["distributed.zero_stage"]
    assert {stage.sample() for _ in range(200)} == {0, 1, 2, 3}  # Ray's randint: the high end exclusive


def test_two_adjacent_keys_that_contradict_each_other_are_refused_in_pairs(tmp_path, base):
    """ramp_start up to 5 and ramp_end down to 4: each end alone (the other key at its midpoint) is valid, but
    ramp_start 5 with ramp_end 4 is not. Only the pair check finds it, for keys next to each other in the file."""
    from mmlnb_dist.tuning.space import SpaceError, load_space

    path = _space(tmp_path, "fusion.curriculum.ramp_start: {randint: [2, 6]}",
                  "fusion.curriculum.ramp_end: {randint: [4, 8]}")
    with pytest.raises(SpaceError, match=r"(?s)'fusion\.curriculum\.ramp_start' high end 5 together with "
                                         r"'fusion\.curriculum\.ramp_end' low end 4.*ramp_end \(4\) must be >= "
                                         r"ramp_start \(5\)"):
        load_space(path, base)
    load_space(_space(tmp_path, "fusion.curriculum.ramp_start: {randint: [2, 5]}",
                      "fusion.curriculum.ramp_end: {randint: [4, 8]}"), base)  # 4 <= 4: valid everywhere


def test_a_scaled_fraction_below_half_an_epoch_trains_from_epoch_one(tmp_path, base):
    """0.0 x 9 epochs rounds to epoch 0, which belongs to the first phase: a scaled key's epochs start at 1."""
    from mmlnb_dist.tuning.space import epochs_of, load_space, to_tune_space

    scaled = {"uniform": [0.0, 0.3], "scale": "epochs"}
    assert [epochs_of(scaled, v, 9) for v in (0.0, 0.05, 0.3)] == [1, 1, 3]
    space = load_space(_space(tmp_path, "fusion.curriculum.phases.1.start_epoch: {uniform: [0.0, 0.3], "
                                        "scale: epochs}"), base)
    phase = to_tune_space(space, "random", 9)["fusion.curriculum.phases.1.start_epoch"]
    assert {phase.sample() for _ in range(300)} == {1, 2, 3}


def test_ray_samples_each_distribution_as_the_file_names_it():
    """The Ray domain of each kind: randint's high end exclusive, quniform on its step, loguniform on a log
    scale (also when scaled to epochs), grid values under a sampling searcher as a choice (Optuna cannot take
    grid_search), and a grid searcher's grid of every value."""
    from ray import tune
    from ray.tune.search.sample import Categorical, Float, Integer

    from mmlnb_dist.tuning.space import to_tune_space

    space = to_tune_space({
        "train.global_batch_size": {"randint": [16, 18]},
        "train.lr": {"quniform": [0.1, 0.5, 0.1]},
        "train.weight_decay": {"loguniform": [1.0e-4, 1.0e-1]},
        "fusion.curriculum.ramp_end": {"loguniform": [0.1, 1.0], "scale": "epochs"},
        "vlm.lora.r": {"grid": [4, 8]},
    }, "random", 20)
    assert {space["train.global_batch_size"].sample() for _ in range(100)} == {16, 17}
    lr = [space["train.lr"].sample() for _ in range(200)]
    assert set(np.round(lr, 9)) == {0.1, 0.2, 0.3, 0.4, 0.5}
    assert isinstance(space["train.weight_decay"], Float)
    log_float, log_int = (type(d.get_sampler()) for d in (tune.loguniform(1, 2), tune.lograndint(1, 2)))
    assert type(space["train.weight_decay"].get_sampler()) is log_float
    ramp = space["fusion.curriculum.ramp_end"]  # 0.1 x 20 = 2 .. 1.0 x 20 = 20 whole epochs, log-spaced
    assert isinstance(ramp, Integer) and (ramp.lower, ramp.upper) == (2, 21)
    assert type(ramp.get_sampler()) is log_int
    assert isinstance(space["vlm.lora.r"], Categorical) and space["vlm.lora.r"].categories == [4, 8]
    assert to_tune_space({"vlm.lora.r": {"choice": [4, 8]}}, "grid", 20) == {"vlm.lora.r": {"grid_search": [4, 8]}}


def test_numpy_values_from_the_searchers_are_applied_as_plain_numbers(base):
    """Optuna and Ray hand numpy scalars: the trial's config (written as YAML, compared, logged) gets plain
    Python numbers."""
    from mmlnb_dist.tuning.space import apply_params

    space = {"train.global_batch_size": {"randint": [16, 65]}, "train.lr": {"loguniform": [1.0e-4, 1.0e-2]}}
    before = copy.deepcopy(base)
    cfg, applied = apply_params(base, {"train.global_batch_size": np.int64(32), "train.lr": np.float64(1e-3)},
                                space)
    assert applied == {"train.global_batch_size": 32, "train.lr": 1e-3}
    assert type(cfg["train"]["global_batch_size"]) is int and type(cfg["train"]["lr"]) is float
    assert yaml.safe_load(yaml.safe_dump(cfg))["train"]["global_batch_size"] == 32
    assert base == before  # the base config is left as it was: each trial applies its values to a copy


@pytest.mark.parametrize("line, says", [
    ("train.lr: {quniform: [1.0e-4, 1.0e-3, 3.0e-4]}",
     r"'train\.lr': quniform needs ends that are whole multiples of its step q \(got low end 0\.0001, high end "
     r"0\.001, q 0\.0003\)"),
    ("train.global_batch_size: {quniform: [16, 64, 0]}", r"'train\.global_batch_size': quniform needs a positive "
                                                          r"step q \(got q 0\)"),
    ("train.global_batch_size: {quniform: [16, 64, -8]}", r"'train\.global_batch_size': quniform needs a positive "
                                                           r"step q \(got q -8\)"),
])
def test_a_quniform_ray_cannot_build_is_refused_when_the_space_is_read(tmp_path, base, line, says):
    """Ray's quniform refuses ends that are not multiples of q, and q=0 divides by zero: such a space passed
    the start-up check and `tune` ended in a raw ValueError / ZeroDivisionError traceback (exit 1). Now a
    SpaceError naming the file and key (exit 2), with or without the search's config."""
    from mmlnb_dist.tuning.space import SpaceError, load_space

    path = _space(tmp_path, line)
    for given in (None, base):
        with pytest.raises(SpaceError, match=rf"{path}: {says}"):
            load_space(path, given)


def test_a_scaled_quniform_needs_no_multiples_of_q(tmp_path, base):
    """With `scale: epochs` Ray never sees the quniform (it samples the distinct epochs of low + i*q): its ends
    need not be multiples of q. An unscaled one whose ends are multiples is Ray's as written."""
    from mmlnb_dist.tuning.space import load_space, to_tune_space

    space = load_space(_space(tmp_path, "fusion.curriculum.ramp_start: {quniform: [0.15, 0.35, 0.1], "
                                        "scale: epochs}", "train.lr: {quniform: [1.0e-3, 4.0e-3, 1.0e-3]}"), base)
    sampled = to_tune_space(space, "random", 10)
    assert sampled["fusion.curriculum.ramp_start"].categories == [2, 3, 4]  # 0.15, 0.25, 0.35 of 10, halves up
    assert set(np.round([sampled["train.lr"].sample() for _ in range(200)], 9)) == {1e-3, 2e-3, 3e-3, 4e-3}


@pytest.mark.parametrize("given", ["mytune/spaces/clip.yaml", "my-tune/spaces/clip", "retune/spaces/curriculum.yaml"])
def test_a_missing_file_in_a_folder_merely_ending_in_tune_is_not_swapped_for_a_shipped_space(tmp_path, monkeypatch,
                                                                                               given):
    """`--space mytune/spaces/clip.yaml` (the user's own folder, run from the wrong directory) resolved to the
    shipped clip space, since 'mytune/spaces' ends with the text 'tune/spaces': the search ran a space the user
    never wrote. Only the checkout path `tune/spaces/NAME` names a shipped space."""
    from mmlnb_dist.tuning.space import SPACES_DIR, SpaceError, resolve_space

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpaceError, match=rf"search space file {given} not found"):
        resolve_space(given)
    assert resolve_space("tune/spaces/clip.yaml") == SPACES_DIR / "clip.yaml"
    assert resolve_space(tmp_path / "checkout" / "tune" / "spaces" / "clip.yaml") == SPACES_DIR / "clip.yaml"

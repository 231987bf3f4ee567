"""Fractions of `train.epochs` (`scale: epochs`) keep the phases the shipped space derives from them strictly
increasing for every number of epochs that has room for them.

`tune --config launch/profiles/cpu-demo.yaml train.epochs=5` with the default (curriculum) space was refused:
"phase start epochs must increase strictly (got [0, 2, 2])". Python's round() rounds halves to even, so the low end
of phase 2 (0.5 x 5 = 2.5) became 2, the high end of phase 1 (0.35 x 5 = 1.75) also 2. Halves now round up; and an
epoch count too small for the space's distinct phases (1 or 2 epochs for three phases) is refused naming
train.epochs and the fewest epochs the space needs, instead of the config's bare complaint."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config

ROOT = Path(__file__).resolve().parents[2]
PHASE_1, PHASE_2 = "fusion.curriculum.phases.1.start_epoch", "fusion.curriculum.phases.2.start_epoch"


def _base(epochs):
    base = load_config(ROOT / "launch" / "profiles" / "cpu-demo.yaml").model_dump(mode="json")
    base["train"]["epochs"] = epochs
    return base


@pytest.mark.parametrize("epochs", [*range(3, 41), 75, 149, 150])
def test_the_shipped_curriculum_space_gives_increasing_phases_for_every_epoch_count(epochs):
    from mmlnb_dist.tuning.space import load_space, resolve_space, to_tune_space

    space = load_space(resolve_space("curriculum"), _base(epochs))  # every end and pair of ends validated
    tune_space = to_tune_space(space, "random", epochs)
    # the epochs Ray samples: every phase 1 start is before every phase 2 start
    assert tune_space[PHASE_1].lower >= 1 and tune_space[PHASE_1].upper - 1 < tune_space[PHASE_2].lower
    # joint has no phase keys: it loads (every end checked, a refusal raises) at this epoch count
    to_tune_space(load_space(resolve_space("joint"), _base(epochs)), "random", epochs)


def test_halves_of_an_epoch_round_up():
    from mmlnb_dist.tuning.space import epochs_of

    scaled = {"uniform": [0.5, 0.75], "scale": "epochs"}
    assert [epochs_of(scaled, 0.5, e) for e in (1, 3, 5, 7, 9)] == [1, 2, 3, 4, 5]  # round() gave 2, 2, 4 at 5, 9
    assert epochs_of(scaled, 0.35, 10) == 4 and epochs_of(scaled, 0.25, 2) == 1
    assert epochs_of({"uniform": [0.5, 1.5]}, 2.5, 5) == 2.5  # an unscaled value as it is


@pytest.mark.parametrize("epochs", [1, 2])
def test_too_few_epochs_for_the_spaces_phases_is_refused_naming_train_epochs_and_the_minimum(epochs):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.tuning.space import load_space, resolve_space

    with pytest.raises(ConfigError, match=rf"(?s)curriculum\.yaml: train\.epochs={epochs} is too few for this "
                                          rf"space: .*train\.epochs=3 or more.*phase start epochs"):
        load_space(resolve_space("curriculum"), _base(epochs))


def test_a_scaled_range_more_epochs_cannot_fix_gets_no_minimum(tmp_path):
    """A scaled ramp start past the base config's fixed ramp end fails at any epoch count: no minimum offered."""
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.tuning.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text("params:\n  fusion.curriculum.ramp_start: {uniform: [0.1, 0.9], scale: epochs}\n")
    with pytest.raises(ConfigError, match=r"ramp_start' high end 0\.9") as err:
        load_space(path, _base(9))
    assert "too few" not in str(err.value)


def test_a_search_at_two_epochs_is_refused_before_ray_starts(tmp_path):
    import ray

    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.tuning.driver import run_search

    cfg = load_config(ROOT / "launch" / "profiles" / "cpu-demo.yaml",
                      [f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]", "train.epochs=2"])
    with pytest.raises(ConfigError, match=r"train\.epochs=2 is too few .*train\.epochs=3 or more"):
        run_search(cfg, "curriculum")
    assert not ray.is_initialized()

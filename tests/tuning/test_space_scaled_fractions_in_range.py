"""`scale: epochs` values are fractions of `train.epochs`, so they lie between 0 and 1. A range beyond it
(`fusion.curriculum.ramp_end: {uniform: [0.5, 1.5], scale: epochs}`) was accepted: on cpu-demo's 9 epochs a trial
could end its ramp at epoch 14, after its training ended, and a negative fraction became epoch 1 without a word.
Refused when the space is read, naming the key and the values; 0 and 1 themselves (randint's exclusive end aside)
are still taken."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.tuning.space import SpaceError, load_space


@pytest.mark.parametrize("spec, named", [("{uniform: [0.5, 1.5], scale: epochs}", "1.5"),
                                         ("{choice: [-0.2, 0.5], scale: epochs}", "-0.2"),
                                         ("{quniform: [0.5, 1.25, 0.25], scale: epochs}", "1.25")])
def test_fractions_outside_0_to_1_are_refused(tmp_path, spec, named):
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  fusion.curriculum.ramp_end: {spec}\n")
    with pytest.raises(SpaceError, match=rf"'fusion\.curriculum\.ramp_end': scale: epochs takes fractions of "
                                         rf"train\.epochs from 0 to 1, but the \w+ holds {named}\b"):
        load_space(space, load_config("cpu-demo").model_dump(mode="json"))


def test_the_ends_0_and_1_are_taken(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  fusion.curriculum.ramp_end: {uniform: [0.7, 1.0], scale: epochs}\n"
                     "  fusion.curriculum.ramp_start: {randint: [0, 2], scale: epochs}\n")
    assert len(load_space(space)) == 2

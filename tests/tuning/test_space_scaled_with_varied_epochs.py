"""`scale: epochs` keys are fractions of `train.epochs`, but Ray samples them as whole epochs of the base config's
`train.epochs` (9 on cpu-demo) before a trial exists: a space that also varies `train.epochs` gave a 3-epoch trial a
ramp ending at epoch 5 to 7 (after its training ended) and a 20-epoch trial one ending at 35% instead of 50-75%,
without a word. Such a space is refused when it is read, naming the keys; either alone still loads."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.tuning.space import SpaceError, load_space

SCALED = "  fusion.curriculum.ramp_end: {uniform: [0.5, 0.75], scale: epochs}\n"
EPOCHS = "  train.epochs: {choice: [3, 20]}\n"


def test_scaled_keys_beside_a_varied_train_epochs_are_refused(tmp_path):
    base = load_config("cpu-demo").model_dump(mode="json")
    space = tmp_path / "space.yaml"
    space.write_text("params:\n" + EPOCHS + SCALED)
    with pytest.raises(SpaceError, match=r"space\.yaml: fusion\.curriculum\.ramp_end \(scale: epochs\) is sampled in "
                                         r"epochs of the base config's train\.epochs=9, but the space varies "
                                         r"train\.epochs too"):
        load_space(space, base)
    for alone in (EPOCHS, SCALED):
        space.write_text("params:\n" + alone)
        assert len(load_space(space, base)) == 1

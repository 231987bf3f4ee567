"""Two keys of one space where one lies inside the other (`fusion.curriculum.phases.1` and
`fusion.curriculum.phases.1.start_epoch`): a trial applied both, the later one replacing what the other had set,
so the inner key's sampled value (in Ray's table, trials.csv and best.yaml) was never trained with. Refused when
the space is read, naming both keys. A key YAML reads as a number or a boolean (`1:`, `on:`) was an
AttributeError traceback; it is named as not a dotted config key."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.tuning.space import SpaceError, load_space

PHASE = "{start_epoch: 3, train_image_encoder: true, train_text_encoder: true}"


@pytest.mark.parametrize("first, second", [
    ("fusion.curriculum.phases.1.start_epoch: {randint: [2, 5]}", f"fusion.curriculum.phases.1: {{choice: [{PHASE}]}}"),
    (f"fusion.curriculum.phases.1: {{choice: [{PHASE}]}}", "fusion.curriculum.phases.1.start_epoch: {randint: [2, 5]}"),
    ("fusion.curriculum.ramp_start: {randint: [2, 4]}",
     "fusion.curriculum: {choice: [{schedule: step, ramp_start: 3, ramp_end: 6}]}"),
])
def test_a_key_inside_another_key_of_the_space_is_refused(tmp_path, first, second):
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  {first}\n  {second}\n")
    inner, outer = sorted([first.split(":")[0], second.split(":")[0]], key=len, reverse=True)
    with pytest.raises(SpaceError, match=rf"space\.yaml: '{inner}' lies inside '{outer}'"):
        load_space(space)
    with pytest.raises(SpaceError, match="lies inside"):
        load_space(space, load_config("cpu-demo").model_dump(mode="json"))


def test_keys_that_only_share_a_prefix_are_kept(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  train.lr: {loguniform: [1.0e-4, 1.0e-3]}\n"
                     "  train.lr_schedule.name: {choice: [constant, cosine]}\n")
    assert set(load_space(space)) == {"train.lr", "train.lr_schedule.name"}


@pytest.mark.parametrize("key", ["1", "on", "null"])
def test_a_key_yaml_reads_as_no_text_is_named(tmp_path, key):
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  {key}: {{choice: [1, 2]}}\n")
    with pytest.raises(SpaceError, match=r"space\.yaml: params key .* is not a dotted config key"):
        load_space(space)

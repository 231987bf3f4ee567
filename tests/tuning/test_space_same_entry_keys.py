"""A list index is a number: `fusion.curriculum.phases.01` and `fusion.curriculum.phases.1` name the same entry. Both
in one space were accepted, and a trial applied both, the later replacing what the other set (as the nested keys the
space already refuses), so one key's sampled value in Ray's table, trials.csv and best.yaml was not trained with.
Refused when the space is read, naming both keys."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.tuning.space import SpaceError, load_space

PHASE = "{start_epoch: 3, train_image_encoder: true, train_text_encoder: true}"


@pytest.mark.parametrize("first, second, says", [
    ("fusion.curriculum.phases.01.start_epoch: {randint: [2, 5]}",
     "fusion.curriculum.phases.1.start_epoch: {randint: [2, 4]}",
     r"'fusion\.curriculum\.phases\.1\.start_epoch' and 'fusion\.curriculum\.phases\.01\.start_epoch' name the same "
     r"setting"),
    ("fusion.curriculum.phases.1.start_epoch: {randint: [2, 5]}", f"fusion.curriculum.phases.01: {{choice: [{PHASE}]}}",
     r"'fusion\.curriculum\.phases\.1\.start_epoch' lies inside 'fusion\.curriculum\.phases\.01'"),
])
def test_two_spellings_of_one_list_entry_are_refused(tmp_path, first, second, says):
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  {first}\n  {second}\n")
    with pytest.raises(SpaceError, match=says):
        load_space(space)
    with pytest.raises(SpaceError, match=says):
        load_space(space, load_config("cpu-demo").model_dump(mode="json"))


def test_different_entries_are_kept(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  fusion.curriculum.phases.01.start_epoch: {randint: [1, 3]}\n"
                     "  fusion.curriculum.phases.10.start_epoch: {randint: [1, 3]}\n")
    assert len(load_space(space)) == 2

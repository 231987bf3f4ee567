"""A resume on a world size that does not divide the run's global batch (saved on 2 processes with global batch 32,
resumed on 3): the refusal led with "set train.global_batch_size to 30 or 33", which the resume then refuses (the
global batch is a result setting, kept from the run's config.yaml). With run.resume=true it now leads with the
process counts the saved global batch fits, and offers another global batch only for a new run."""
from __future__ import annotations

import re

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.distributed import plan_batch
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes import recipe_class


def _refusal(profile: str, recipe: str, overrides, world: int) -> str:
    cfg = load_config(profile, list(overrides))
    with pytest.raises(ConfigError) as err:
        recipe_class(recipe).check_config(cfg, world)
    return str(err.value)


@pytest.mark.parametrize("profile, recipe, key, overrides", [
    ("cpu-demo", "fusion", "train.global_batch_size", ["train.global_batch_size=32"]),
    ("clip-demo", "clip", "train.global_batch_size", ["train.global_batch_size=32"]),
    ("cpu-demo", "vlm", "vlm.global_batch_size", ["vlm.global_batch_size=32", "vlm.micro_batch_per_gpu=null",
                                                  "distributed.micro_batch_per_gpu=null"]),
])
def test_a_resume_is_told_the_processes_it_fits_not_a_global_batch_it_cannot_change(profile, recipe, key, overrides):
    said = _refusal(profile, recipe, [*overrides, "run.resume=true"], 3)
    assert said.startswith(f"{key}: global batch 32 is not divisible by world size 3"), said
    remedy = said.split(":", 2)[2]
    assert re.search(r"resume on 1, 2, 4 processes", remedy), said
    assert remedy.index("resume on") < remedy.index(f"{key} set to 30 or 33"), said  # the new run comes second
    assert "a new run" in said, said
    # a fresh run keeps the advice it had
    fresh = _refusal(profile, recipe, overrides, 3)
    assert f"set {key} to 30 or 33" in fresh and "resume on" not in fresh, fresh


def test_every_process_count_offered_plans():
    with pytest.raises(ConfigError) as err:
        plan_batch(32, 3, None, resuming=True)
    counts = [int(n) for n in re.search(r"resume on (\d+(?:, \d+)*) process", str(err.value)).group(1).split(", ")]
    assert counts and all(plan_batch(32, n, None).world_size == n for n in counts)

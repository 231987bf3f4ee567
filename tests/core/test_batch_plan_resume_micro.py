"""A resume on more processes than the run's fixed micro batch fits (saved on 1 process with global batch 32 and
`distributed.micro_batch_per_gpu=8`, resumed on 8: 8 x 8 > 32): the refusal said "set
distributed.micro_batch_per_gpu to 1, 2, 4", which the resume then refuses in turn (the micro batch is a setting of
the run's config.yaml: `distributed.micro_batch_per_gpu: 8 -> 4 ... continuing it would mix two results`), a dead
end. With run.resume=true it now leads with the process counts the saved micro batch fits."""
from __future__ import annotations

import re

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.distributed import plan_batch
from mmlnb_dist.core.errors import ConfigError, UserError
from mmlnb_dist.core.recipe import check_resume_config
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

RUN = ["train.global_batch_size=32", "distributed.micro_batch_per_gpu=8"]


def test_the_micro_batch_a_remedy_would_change_is_refused_on_resume(tmp_path):
    """Why the old advice was a dead end: the resume check refuses the micro batch it named."""
    started = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r", *RUN])
    save_config(started, started.run.dir / "config.yaml")
    (started.run.dir / "checkpoints" / "epoch-0000").mkdir(parents=True)
    resumed = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r", "train.global_batch_size=32",
                                       "distributed.micro_batch_per_gpu=4", "run.resume=true"])
    with pytest.raises(UserError, match=r"distributed\.micro_batch_per_gpu: 8 -> 4"):
        check_resume_config(resumed, started.run.dir, FusionRecipe, record=False)


def test_a_resume_is_told_the_processes_its_micro_batch_fits():
    cfg = load_config("cpu-demo", [*RUN, "run.resume=true"])
    with pytest.raises(ConfigError) as err:
        FusionRecipe.check_config(cfg, 8)
    said = str(err.value)
    assert said.startswith("train.global_batch_size: global batch 32 is not a multiple of micro batch 8 x world "
                           "size 8 = 64"), said
    assert "resume on 1, 2, 4 processes" in said, said
    assert said.index("resume on") < said.index("a new run"), said
    counts = [int(n) for n in re.search(r"resume on (\d+(?:, \d+)*) process", said).group(1).split(", ")]
    assert all(plan_batch(32, n, 8).world_size == n for n in counts)


def test_a_fresh_run_keeps_the_micro_batch_advice():
    with pytest.raises(ConfigError) as err:
        FusionRecipe.check_config(load_config("cpu-demo", RUN), 8)
    assert "set distributed.micro_batch_per_gpu to 1, 2, 4" in str(err.value) and "resume on" not in str(err.value)

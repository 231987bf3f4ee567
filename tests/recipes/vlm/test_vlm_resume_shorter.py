"""A resume asking for fewer optimizer steps than the run has already trained is refused before any work, naming
the key and the step reached: it would train nothing, save the later step's adapter as if it were the shorter run's,
and record a config (vlm.max_steps) that does not describe the adapter."""
from __future__ import annotations

import pytest

from support.vlm import finetune_config, make_pairs


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    tmp = tmp_path_factory.mktemp("vlm_resume_shorter")
    make_pairs(tmp / "pairs", n=16)
    result = run(FinetuneVLMRecipe, finetune_config(tmp, "r", "vlm.max_steps=4", "vlm.checkpoint_every=2"))
    assert result["step"] == 4
    return tmp


@pytest.mark.parametrize("shorter", [["vlm.max_steps=2"], ["vlm.max_steps=null", "vlm.epochs=1"]])
def test_resume_with_fewer_steps_than_trained_is_refused(done, shorter):
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    run_dir = done / "runs/r"
    before = (run_dir / "adapter/adapter_model.safetensors").read_bytes()
    with pytest.raises(UserError) as err:  # (ConfigError is a UserError)
        run(FinetuneVLMRecipe, finetune_config(done, "r", "vlm.checkpoint_every=2", "run.resume=true", *shorter))
    text = str(err.value)
    key = "vlm.max_steps" if "vlm.max_steps=2" in shorter else "vlm.epochs"
    assert key in text and "step 4" in text and "step-000004" in text, text
    assert (run_dir / "adapter/adapter_model.safetensors").read_bytes() == before


def test_resume_with_as_many_steps_or_more_is_allowed(done):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    result = run(FinetuneVLMRecipe, finetune_config(done, "r", "vlm.max_steps=5", "vlm.checkpoint_every=2",
                                                    "run.resume=true"))
    assert result["step"] == 5

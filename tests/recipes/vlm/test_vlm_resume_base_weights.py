"""A fine-tune resumed on other base weights than it began on (the local base folder overwritten, or a newer hub
revision pulled into the cache between the kill and the resume): refused, naming the model and what changed. The
checkpoints hold the LoRA weights alone, so the resume used to continue them on the new base silently: an adapter
trained on two models. The same weights in a copied folder (new mtimes) resume."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmlnb_dist.core.errors import UserError

from support.vlm import Interrupted, finetune_config, make_pairs


def _cfg(tmp: Path, base: Path, *extra: str):
    return finetune_config(tmp, "run", f"vlm.model={base}", "vlm.max_steps=4", "vlm.checkpoint_every=2",
                           "vlm.eval_every=3", "vlm.val_max_samples=4", *extra)


def _cut_run(tmp: Path, base: Path) -> None:
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    def fail_at_step_3(step, metrics):
        if step == 3:
            raise Interrupted(step)

    with pytest.raises(Interrupted):
        run(FinetuneVLMRecipe, _cfg(tmp, base, "vlm.log_every=1"), report=fail_at_step_3)
    assert (tmp / "runs/run/checkpoints/step-000002").is_dir()


@pytest.fixture()
def base(tmp_path):
    from mmlnb_dist.recipes.vlm import model as V

    make_pairs(tmp_path / "pairs", n=16)
    tiny = V.resolve_model_path("tiny", 0, tmp_path / "cache", "random")
    return Path(shutil.copytree(tiny, tmp_path / "qwen-local"))


def test_a_resume_on_replaced_base_weights_is_refused(base, tmp_path):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    _cut_run(tmp_path, base)
    weights = sorted(base.glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-4:] = bytes(4)  # other weights, the same size
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"(?s)qwen-local.*model_weights"):
        run(FinetuneVLMRecipe, _cfg(tmp_path, base, "vlm.log_every=1", "run.resume=true"))


def test_a_resume_on_a_copy_of_the_same_base_weights_continues(base, tmp_path):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    _cut_run(tmp_path, base)
    moved = base.with_name("qwen-moved")
    shutil.copytree(base, moved, copy_function=shutil.copyfile)
    shutil.rmtree(base)
    moved.rename(base)  # the same bytes, new mtimes
    result = run(FinetuneVLMRecipe, _cfg(tmp_path, base, "vlm.log_every=1", "run.resume=true"))
    assert result["step"] == 4

"""`finetune-vlm` refuses a learning rate for a part of the model that is not trained: `vlm.merger_lr` with a frozen
merger, `vlm.vision_lr` with no trained part of the vision tower. `model.param_groups` gives a part's rate to that
part's trainable parameters only, so the rate trained nothing, without a word. Refused by fine-tuning's config
check where the config alone decides it, else on the model's structure, before the run folder."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.vlm.config import LoraConfig, VLMConfig

from support.cli import run_cli
from support.vlm import ROOT

PIX = 56 * 56
PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


# -- a rate for a part that is not trained ------------------------------------------------------------------

@pytest.mark.parametrize("rate, flag", [("merger_lr", "train_merger"), ("vision_lr", "vision_lora")])
def test_a_rate_without_its_trained_part_is_refused_by_the_fine_tuning_config_check_naming_both_keys(rate, flag):
    """`param_groups` gives the rate to trainable parameters of its part only: with the part frozen (and nothing
    of it in `modules_to_save`) the rate trained nothing, without a word. The check is fine-tuning's (`config
    validate` and the pipeline's start run it), not the config's: a run's recorded config with such a rate, written
    before, still loads for `predict` and `describe --config`."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes import check_configs

    cfg = load_config(PROFILE, [f"vlm.{rate}=1e-2", f"vlm.lora.{flag}=false", "vlm.lora.modules_to_save=[]"])
    with pytest.raises(ConfigError) as err:
        check_configs(cfg, 1, ["vlm"])
    assert f"vlm.{rate}" in str(err.value) and f"vlm.lora.{flag}" in str(err.value)
    check_configs(load_config(PROFILE, [f"vlm.{rate}=1e-2", f"vlm.lora.{flag}=true"]), 1, ["vlm"])


def test_the_rates_reach_a_part_saved_in_full_and_are_refused_beside_unrelated_modules(cache):
    """A vision module or the merger in `vlm.lora.modules_to_save` is trained and takes its rate (docs/vlm.md's
    patch-embedding run: modules_to_save + vision_lr); `lm_head` and `embed_tokens` are not in either part."""
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.lora_names import check_part_rates, model_skeleton

    skeleton = model_skeleton(V.resolve_model_path("tiny", 0, cache, "random"))
    check_part_rates(skeleton, VLMConfig(vision_lr=1e-3, lora=LoraConfig(modules_to_save=["patch_embed"])))
    check_part_rates(skeleton, VLMConfig(merger_lr=1e-3, lora=LoraConfig(modules_to_save=["visual.merger"])))
    check_part_rates(skeleton, VLMConfig(merger_lr=1e-3, vision_lr=1e-3,
                                         lora=LoraConfig(vision_lora=True, train_merger=True)))
    for rate, flag in (("merger_lr", "train_merger"), ("vision_lr", "vision_lora")):
        vcfg = VLMConfig(**{rate: 1e-3}, lora=LoraConfig(modules_to_save=["lm_head", "embed_tokens"]))
        with pytest.raises(ConfigError) as err:
            check_part_rates(skeleton, vcfg)
        assert f"vlm.{rate}" in str(err.value) and f"vlm.lora.{flag}" in str(err.value)
    with pytest.raises(ConfigError, match="vlm.merger_lr"):  # the tower's blocks are not the merger
        check_part_rates(skeleton, VLMConfig(merger_lr=1e-3, lora=LoraConfig(vision_lora=True,
                                                                            modules_to_save=["lm_head"])))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    from support.vlm import make_pairs

    return make_pairs(tmp_path_factory.mktemp("rates") / "pairs", n=12)


def _finetune(pairs, tmp_path, cache, *overrides):
    runs = tmp_path / "runs"
    code, _, err = run_cli(["finetune-vlm", "--config", PROFILE, f"vlm.pairs={pairs}",
                            f"run.output_dir={runs}", "run.name=rates", "tracking.backends=[stdout]",
                            f"vlm.cache_dir={cache}", "vlm.tiny_vision=random",
                            f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", "vlm.global_batch_size=4",
                            "vlm.max_steps=1", *overrides])
    return code, err, runs


def test_the_demo_profile_without_its_trained_merger_is_refused_before_the_run_folder(pairs, tmp_path, cache):
    """cpu-demo sets vlm.merger_lr 2e-2 with a trained merger; `vlm.lora.train_merger=false` (a no-merger ablation)
    kept the 2e-2 in the config and trained nothing at it."""
    code, err, runs = _finetune(pairs, tmp_path, cache, "vlm.lora.train_merger=false")
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "vlm.merger_lr" in last and "vlm.lora.train_merger" in last, last
    assert not runs.exists() or not any(runs.iterdir()), sorted(p.name for p in runs.rglob("*"))

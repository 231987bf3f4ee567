"""`describe_images`, the in-memory path `predict --vlm` uses, generates what `describe` would, with the `vlm`
section the adapter was trained with (`predict` reads it from the fine-tuning run's config.yaml)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mmlnb_dist.config import load_config, save_config
from mmlnb_dist.data.synthetic import render_patch
from mmlnb_dist.recipes.vlm.describe import describe_images


def _images(n):
    out = []
    for i, label in zip(range(n), ["UD", "PD", "D"] * n):
        buf = io.BytesIO()
        Image.fromarray(render_patch(label, 56, np.random.default_rng(i))).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def test_batched_generation_equals_one_at_a_time_and_reads_the_training_config(tmp_path):
    overrides = [f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]", "vlm.model=tiny", "vlm.min_pixels=3136", "vlm.max_pixels=3136",
                 "vlm.generation.max_new_tokens=6", "vlm.generation.batch_size=3"]
    cfg = load_config(None, overrides)
    images = _images(4)
    batched = describe_images(images, "tiny", None, cfg.vlm)
    single = describe_images(images, "tiny", None, cfg.vlm.model_copy(
        update={"generation": cfg.vlm.generation.model_copy(update={"batch_size": 1})}))
    assert len(batched) == 4 and batched == single  # left padding must not change greedy outputs

    # Prediction passes no config: the settings come from the fine-tuning run that holds the adapter folder.
    run_dir = tmp_path / "run"
    save_config(cfg, run_dir / "config.yaml")
    (run_dir / "adapter").mkdir()
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")  # a peft folder's marker (predict checks it)
    from mmlnb_dist.predict import run as predict_run
    from mmlnb_dist.recipes.vlm import describe as describe_module

    seen = {}

    class Spy(describe_module.Describer):
        def __init__(self, vcfg, vlm, adapter, device, precision):
            seen["vcfg"] = vcfg
            super().__init__(vcfg, vlm, None, device, precision)

    describe_module.Describer, original = Spy, describe_module.Describer
    try:
        predict_run._vlm_describer("tiny", run_dir / "adapter")(images[:1])
    finally:
        describe_module.Describer = original
    assert seen["vcfg"].max_pixels == 3136 and seen["vcfg"].generation.max_new_tokens == 6

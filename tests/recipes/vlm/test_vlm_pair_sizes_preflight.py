"""`finetune-vlm` refuses, before the run folder, a shard set holding an image whose prompt alone fills
`vlm.max_length`: the preflight measured a square image at `vlm.max_pixels`, and a narrow image takes more tokens;
the exact per-size count ran in setup, after the run folder existed."""
from __future__ import annotations


import pytest

from support.cli import run_cli
from support.vlm import ROOT, flat_png

PIX = 56 * 56
PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


def test_a_narrow_image_too_long_for_max_length_is_refused_before_the_run_folder(tmp_path, cache):
    """The preflight measured a square image at vlm.max_pixels; the processor scales a 300x10 image up past
    vlm.min_pixels, rounding each side up to whole patches, so it takes more tokens. The exact per-size count ran
    in setup, after the run folder existed: the corrected rerun met a folder it had not made."""
    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.preflight import largest_prompt_tokens

    processor = V.load_processor(V.resolve_model_path("tiny", 0, cache, "random"), PIX, PIX)
    prompt = "Describe."
    square = largest_prompt_tokens(processor, prompt, PIX)
    narrow = len(V.encode_prompt(processor, V.as_rgb(flat_png((300, 10))), prompt).input_ids)
    assert narrow > square  # what the test is about
    samples = [SampleSpec(key=f"sq{i}", label="UD", image=flat_png((56, 56)), description="Round cells.")
               for i in range(4)] + [SampleSpec(key="narrow0", label="UD", image=flat_png((300, 10)),
                                                description="Round cells.")]
    build = BuildConfig(max_samples_per_shard=8, val_fraction=0.0, test_fraction=0.0, image_format="original",
                        group_by_slide=False, seed=0)
    pairs = tmp_path / "pairs"
    build_shards(samples, pairs, build, ["UD", "PD", "D"], progress=False)
    runs = tmp_path / "runs"
    code, _, err = run_cli(["finetune-vlm", "--config", PROFILE, f"vlm.pairs={pairs}",
                            f"run.output_dir={runs}", "run.name=narrow", "tracking.backends=[stdout]",
                            f"vlm.cache_dir={cache}", "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}",
                            f"vlm.max_pixels={PIX}", "vlm.global_batch_size=4", "vlm.max_steps=1",
                            f"vlm.prompt={prompt}", f"vlm.max_length={narrow}"])
    assert code == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert f"vlm.max_length={narrow}" in last and "300x10" in last and "narrow0" in last, last
    assert not runs.exists() or not any(runs.iterdir()), sorted(p.name for p in runs.rglob("*"))


def test_the_size_of_an_unreadable_image_is_a_shard_error_naming_the_sample():
    """The size count reads each image's header; bytes that are no image (a shard damaged past its checksum, with
    data.loader.preflight=off) are named by sample, not a PIL traceback."""
    from mmlnb_dist.data.shardset import ShardError
    from mmlnb_dist.recipes.vlm.pair_lengths import image_size

    assert image_size(flat_png((300, 10)), "k") == (300, 10)
    with pytest.raises(ShardError, match="sample bad-7's image cannot be read"):
        image_size(b"not an image", "bad-7")

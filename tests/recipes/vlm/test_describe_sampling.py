"""Sampled descriptions (`vlm.generation.preset: authors`) are reproducible: the generator is seeded by the batch's
pixels inside a forked RNG state, so a rerun, `describe` and `predict --vlm` write the same text for the same
images, while the caller's random state is left alone. In-process, seconds (the random tiny VLM)."""
from __future__ import annotations

import io

import numpy as np
import pytest

PIX = 56 * 56
PROMPT = "You are a specialized pathologist, please describe what you see microscopically."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from mmlnb_dist.recipes.vlm import model as V

    return V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=tmp_path_factory.mktemp("cache"))


def _images(seed: int, n: int = 3):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)) for _ in range(n)]


def test_sampling_is_seeded_by_the_images_and_leaves_the_global_rng_alone(tiny):
    import torch

    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.config import GenerationConfig

    model, proc = tiny
    gen = GenerationConfig(preset="authors", max_new_tokens=12)
    images = _images(0)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = V.generate_descriptions(model, proc, images, PROMPT, gen)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's stream did not move
    torch.manual_seed(999)  # another global state: the same descriptions
    assert V.generate_descriptions(model, proc, images, PROMPT, gen) == first
    as_bytes = []
    for im in images:
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        as_bytes.append(buf.getvalue())
    assert V.generate_descriptions(model, proc, as_bytes, PROMPT, gen) == first  # bytes or PIL: same pixels
    greedy = V.generate_descriptions(model, proc, images, PROMPT, GenerationConfig(max_new_tokens=12))
    assert first != greedy  # it does sample
    other = V.generate_descriptions(model, proc, _images(1), PROMPT, gen)
    assert other != first

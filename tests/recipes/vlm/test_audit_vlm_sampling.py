"""Mutation audit of seeded sampling (recipes/vlm/sampling.py) beyond the distribution checks: a batch whose pixels
and grid disagree, or more score rows than image seeds (beam search, several sequences per image), is refused rather
than seeded from the wrong rows or from uninitialised noise; `top_k: 0` means no top-k cut (as HF reads it); the
image seed is the processed pixels' own."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.recipes.vlm.sampling import GumbelNoise, image_seeds, pixel_seed, seeded_sampling


def test_image_seeds_are_each_image_s_own_rows_and_a_mismatched_grid_is_refused():
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(4 + 16, 6, generator=gen)
    grid = torch.tensor([[1, 2, 2], [1, 4, 4]])
    assert image_seeds(pixels, grid) == [pixel_seed(pixels[:4]), pixel_seed(pixels[4:])]
    assert image_seeds(pixels[4:], grid[1:]) == [pixel_seed(pixels[4:])]  # alone or beside another: the same seed
    with pytest.raises(ValueError, match=r"image_grid_thw accounts for 20 patch rows, pixel_values has 21"):
        image_seeds(torch.cat([pixels, pixels[:1]]), grid)


def test_more_score_rows_than_image_seeds_are_refused():
    noise = GumbelNoise([1, 2], prompt_length=3)
    ids = torch.zeros(4, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"4 rows of scores for 2 image seeds .*num_return_sequences"):
        noise(ids, torch.zeros(4, 10))
    assert noise(ids[:2], torch.zeros(2, 10)).shape == (2, 10)


def test_top_k_zero_is_no_cut():
    """`vlm.generation.top_k: 0` (the config's "no limit") adds no top-k step: the scores keep every token."""
    from transformers import TemperatureLogitsWarper

    from mmlnb_dist.recipes.vlm.config import GenerationConfig
    from mmlnb_dist.recipes.vlm.model import decoding_settings

    kwargs = decoding_settings(GenerationConfig(preset="authors", top_k=0, top_p=1.0, repetition_penalty=1.0))
    out = seeded_sampling(kwargs, None, torch.ones(1, 3, dtype=torch.long))
    assert [type(p) for p in out["logits_processor"]] == [TemperatureLogitsWarper]
    scores = torch.randn(1, 50, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(out["logits_processor"](torch.zeros(1, 3, dtype=torch.long), scores)).all()

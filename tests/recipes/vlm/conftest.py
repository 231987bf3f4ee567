"""Fixtures of the VLM tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny_56_112(tmp_path_factory):
    """The random tiny VLM with pixel bounds 56x56 .. 112x112: 56 px images all get 4 image tokens; a 112 px one
    gets 16, so its longer prompt left-pads a 56 px image in the same batch."""
    from mmlnb_dist.recipes.vlm import model as V

    return V.load_vlm("tiny", min_pixels=56 * 56, max_pixels=112 * 112, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A module's own model cache folder."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny(cache):
    """The random tiny VLM and its processor with 56x56 images (4 image tokens each)."""
    from mmlnb_dist.recipes.vlm import model as V

    return V.load_vlm("tiny", min_pixels=56 * 56, max_pixels=56 * 56, cache_dir=cache)

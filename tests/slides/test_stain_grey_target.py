"""A grey stain target (a greyscale scan or export of H&E) holds no stain colour: fitted on it, Macenko and
Reinhard turn every tile grey while the tiles' meta says they were normalised. It is refused, naming the file,
before any slide is tiled; a colour H&E target of the same tissue is accepted."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.synthetic import render_patch
from mmlnb_dist.slides.stain import StainNormalizer, StainTargetError, load_rgb


@pytest.fixture
def he():
    return render_patch("UD", 128, np.random.default_rng(0))


def test_a_grey_target_file_is_refused(he, tmp_path):
    Image.fromarray(he).save(tmp_path / "colour.png")
    Image.fromarray(he).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(he).convert("L").convert("RGB").save(tmp_path / "grey-rgb.png")  # grey saved as RGB
    assert load_rgb(tmp_path / "colour.png").shape == (128, 128, 3)
    for name in ("grey.png", "grey-rgb.png"):
        with pytest.raises(StainTargetError, match=rf"{name}: .*no stain colour.*grey"):
            load_rgb(tmp_path / name)


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_a_grey_region_of_a_slide_is_refused_as_a_target(he, method):
    grey = np.repeat(np.asarray(Image.fromarray(he).convert("L"))[..., None], 3, axis=2)
    with pytest.raises(StainTargetError, match="no stain colour"):
        StainNormalizer(method, grey)
    out, used = StainNormalizer(method, he)(he)  # a colour target: the tile keeps its colour
    assert used == method and np.abs(out.astype(int) - out.mean(axis=2, keepdims=True)).mean() > 5

"""A very elongated image (a 1-pixel-high strip, a broken export) is centre-cropped without first being resized
whole: resizing its short side to `image_size` made a 1 x 20,000 strip a 256 x 5,120,000 image (5.9 GB for a
build of 17 patches). The crop is the same, within one grey level, as resize-then-crop; ordinary images are
encoded exactly as before."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data import build as B
from mmlnb_dist.data.config import BuildConfig


def _reference(img: Image.Image, size: int) -> np.ndarray:
    """Resize the short side to `size`, centre-crop square: what the build stores."""
    w, h = img.size
    scale = size / min(w, h)
    w2, h2 = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (w2 - size) // 2, (h2 - size) // 2
    return np.asarray(img.resize((w2, h2), Image.BICUBIC).crop((left, top, left + size, top + size)))


def _encoded(img: Image.Image, size: int) -> np.ndarray:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    ext, data = B._encode(B.SampleSpec(key="k", label="UD", image=buf.getvalue()),
                          BuildConfig(image_format="png", image_size=size))
    assert ext == "png"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture
def resizes(monkeypatch):
    asked = []
    real = Image.Image.resize

    def resize(self, size, *args, **kwargs):
        asked.append(tuple(size))
        return real(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", resize)
    return asked


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 2), (5, 400)], ids=["row", "column", "thin-strip"])
def test_a_strip_is_cropped_before_it_is_resized(shape, resizes):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    waves = [127 + 120 * np.sin(xx / 17.0 + k) * np.cos(yy / 13.0 - k) for k in range(3)]  # smooth tissue-like
    img = Image.fromarray(np.stack(waves, axis=-1).round().astype(np.uint8))
    reference = _reference(img, 32)
    resizes.clear()
    out = _encoded(img, 32)
    assert out.shape == (32, 32, 3)
    assert np.abs(out.astype(int) - reference).max() <= 1
    assert resizes and max(max(s) for s in resizes) <= 4 * 32, resizes  # never the whole strip at full scale


@pytest.mark.parametrize("shape", [(96, 128), (300, 40), (20, 20), (64, 64)])
def test_ordinary_images_are_encoded_exactly_as_resize_then_crop(shape):
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8))
    np.testing.assert_array_equal(_encoded(img, 64), _reference(img, 64))


def test_the_prediction_transform_crops_a_strip_before_it_is_resized(resizes):
    from mmlnb_dist.data.images import ImageTransform

    yy, xx = np.mgrid[:2, :4000]
    img = Image.fromarray(np.stack([(xx + 40 * yy) % 256] * 3, axis=-1).astype(np.uint8))
    resizes.clear()
    out = ImageTransform(32).to_array(img)
    assert out.shape == (32, 32, 3) and max(max(s) for s in resizes) <= 4 * 32, resizes
    ordinary = Image.fromarray(np.random.default_rng(2).integers(0, 256, (50, 90, 3), dtype=np.uint8))
    np.testing.assert_array_equal(ImageTransform(32).to_array(ordinary),
                                  np.asarray(ordinary.resize((58, 32), Image.BILINEAR).crop((13, 0, 45, 32))))

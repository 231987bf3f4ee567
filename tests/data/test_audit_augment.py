"""Audit of training augmentation (`data.stain_augment`, `data.images`): the stain jitter's draws stay within the
configured ranges and its config refuses ranges that make no sense, its output saturates instead of wrapping
around, and the geometric transform is torchvision's resize + centre crop with all 8 dihedral variants used."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from mmlnb_dist.data import stain_augment
from mmlnb_dist.data.images import ImageTransform, sample_rng
from mmlnb_dist.data.stain_augment import StainAugment, StainAugmentConfig, hed_jitter


def test_stain_draws_stay_within_the_configured_ranges(monkeypatch):
    """alpha ~ U(1 - sigma, 1 + sigma) and beta ~ U(-bias, bias), per channel, spanning the range."""
    seen = []
    monkeypatch.setattr(stain_augment, "hed_jitter", lambda rgb, a, b: seen.append((a, b)) or rgb)
    aug = StainAugment(StainAugmentConfig(kind="hed", sigma=0.2, bias=0.05))
    image = np.full((2, 2, 3), 128, np.uint8)
    for i in range(300):
        aug(image, np.random.default_rng(i))
    alpha, beta = np.array([a for a, _ in seen]), np.array([b for _, b in seen])
    assert alpha.shape == beta.shape == (300, 3)
    assert alpha.min() >= 0.8 and alpha.max() <= 1.2 and alpha.min() < 0.82 and alpha.max() > 1.18
    assert beta.min() >= -0.05 and beta.max() <= 0.05 and beta.min() < -0.045 and beta.max() > 0.045


@pytest.mark.parametrize("field, value", [("sigma", 1.0), ("sigma", -0.01), ("bias", 0.21), ("bias", -0.01),
                                          ("kind", "macenko")])
def test_stain_config_refuses_out_of_range_values(field, value):
    """sigma >= 1 would allow a zero or negative stain scale; negative ranges and unknown kinds are refused."""
    with pytest.raises(ValidationError):
        StainAugmentConfig(**{field: value})


def test_stain_jitter_saturates_instead_of_wrapping_around():
    """A jitter that lightens glass (white) past 255 or darkens ink past 0 clips, as skimage's hed2rgb does."""
    from skimage.color import hed2rgb, rgb2hed

    image = np.array([[[255, 255, 255], [250, 250, 250], [0, 0, 0], [3, 2, 1]]], dtype=np.uint8)
    alpha, beta = np.array([1.5, 1.5, 1.5]), np.array([-0.05, -0.05, -0.05])
    out = hed_jitter(image, alpha, beta)
    ref = np.clip(np.rint(hed2rgb(rgb2hed(image) * alpha + beta) * 255.0), 0, 255).astype(np.uint8)
    assert np.array_equal(out[0, :2], np.full((2, 3), 255, np.uint8))  # lightened past white: white, not dark
    assert np.array_equal(out[0, :2], ref[0, :2])
    assert out[0, 2].max() <= 1  # darkened black stays black


@pytest.mark.parametrize("w, h, s", [(48, 32, 16), (32, 64, 16), (40, 40, 20), (16, 16, 16)])
def test_resize_and_centre_crop_match_torchvision(w, h, s):
    """The eval transform is torchvision's Resize(s) (bilinear, shorter side) + CenterCrop(s), pixel for pixel."""
    from PIL import Image
    from torchvision import transforms

    pixels = np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    ref = transforms.Compose([transforms.Resize(s, interpolation=transforms.InterpolationMode.BILINEAR),
                              transforms.CenterCrop(s)])(img)
    out = ImageTransform(s).to_array(img)
    assert out.shape == (s, s, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.asarray(ref))


def test_augmentation_uses_all_eight_dihedral_variants_and_none_without_a_generator():
    """Training draws flips and quarter turns (all 8 label-preserving variants occur over samples); no generator
    (evaluation) or augment off leaves the image as it is."""
    from PIL import Image

    pixels = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    img = Image.fromarray(pixels)
    variants = [np.rot90(p, k) for p in (pixels, pixels[:, ::-1]) for k in range(4)]
    seen = set()
    for i in range(200):
        out = ImageTransform(4, augment=True).to_array(img, sample_rng(0, 0, f"key{i}"))
        seen.add(next(j for j, v in enumerate(variants) if np.array_equal(out, v)))
    assert seen == set(range(8))
    assert np.array_equal(ImageTransform(4, augment=True).to_array(img, None), pixels)
    assert np.array_equal(ImageTransform(4, augment=False).to_array(img, sample_rng(0, 0, "key0")), pixels)

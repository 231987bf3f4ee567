"""Stain augmentation (`data.loader.stain`, HED jitter): checked against scikit-image's colour deconvolution,
the identity at zero strength, deterministic per (seed, epoch, key), and byte-identical output when off."""
from __future__ import annotations

import io

import numpy as np
import pytest

from mmlnb_dist.data.stain_augment import StainAugment, StainAugmentConfig, hed_jitter, rgb_to_hed


@pytest.fixture(scope="module")
def patch() -> np.ndarray:
    """An H&E-like patch of the synthetic set (real stain vectors, a slide's own stain)."""
    from mmlnb_dist.data.synthetic import random_stain, render_patch

    return render_patch("D", 96, np.random.default_rng(3), random_stain(np.random.default_rng(4)))


def test_deconvolution_matches_skimage(patch):
    from skimage.color import rgb2hed

    ours = rgb_to_hed(patch)
    reference = rgb2hed(patch)  # skimage clips negative concentrations to 0; ours keeps them (exact identity)
    np.testing.assert_allclose(np.maximum(ours, 0.0), reference, atol=1e-9)


def test_jitter_matches_skimage_round_trip(patch):
    from skimage.color import hed2rgb, rgb2hed

    alpha, beta = np.array([1.04, 0.96, 1.02]), np.array([0.008, -0.006, 0.003])
    ours = hed_jitter(patch, alpha, beta)
    ref = np.clip(np.rint(hed2rgb(rgb2hed(patch) * alpha + beta) * 255.0), 0, 255)
    # Where skimage's clipping of negative concentrations does not apply the two agree to rounding.
    unclipped = (rgb_to_hed(patch) >= 0).all(axis=-1)
    assert unclipped.mean() > 0.5
    diff = np.abs(ours.astype(int) - ref.astype(int))[unclipped]
    assert diff.max() <= 1, diff.max()
    assert np.abs(ours.astype(int) - patch.astype(int)).mean() > 2  # and it did change the image


def test_zero_strength_is_identity(patch):
    assert np.array_equal(hed_jitter(patch, np.ones(3), np.zeros(3)), patch)
    aug = StainAugment(StainAugmentConfig(kind="hed", sigma=0.0, bias=0.0))
    assert np.array_equal(aug(patch, np.random.default_rng(0)), patch)
    extremes = np.array([[[0, 0, 0], [255, 255, 255], [1, 128, 254]]], dtype=np.uint8)
    assert np.array_equal(hed_jitter(extremes, np.ones(3), np.zeros(3)), extremes)


def test_optical_density_stays_in_the_jitter_envelope(patch):
    cfg = StainAugmentConfig(kind="hed", sigma=0.1, bias=0.01)
    rng = np.random.default_rng(7)
    alpha = rng.uniform(1 - cfg.sigma, 1 + cfg.sigma, 3)
    beta = rng.uniform(-cfg.bias, cfg.bias, 3)
    out = StainAugment(cfg)(patch, np.random.default_rng(7))  # the same draws as alpha, beta above
    assert out.dtype == np.uint8 and out.shape == patch.shape
    before, after = rgb_to_hed(patch), rgb_to_hed(out)
    # Away from saturation, the augmented image's concentrations are the jittered ones (up to 8-bit rounding);
    # in particular, its optical density stays within what sigma and bias allow.
    ok = ((patch > 20) & (patch < 250) & (out > 20) & (out < 250)).all(axis=-1)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(after[ok], (before * alpha + beta)[ok], atol=2e-3)
    od_in, od_out = -np.log(patch[ok] / 255.0), -np.log(out[ok] / 255.0)
    scale_bound = np.abs(od_out - od_in).max()
    assert scale_bound < cfg.sigma * od_in.max() * 2 + cfg.bias * 13.82 * 2


def _raw(patch: np.ndarray, key: str = "s00001") -> dict:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(patch).save(buf, format="PNG")
    return {"__key__": key, "png": buf.getvalue(), "cls": b"2", "txt": b"a description"}


def _decode(patch, stain, *, augment=True, seed=0, epoch=0, train=True, key="s00001"):
    from mmlnb_dist.data.preprocess import ClassIndexLabel, ImageSamplePreprocess, SampleContext

    pre = ImageSamplePreprocess(96, ClassIndexLabel(["UD", "PD", "D"]), augment=augment, mean=(0, 0, 0),
                                std=(1, 1, 1), stain=stain)
    return pre.decode(_raw(patch, key), SampleContext(seed, epoch, train))["image"]


def test_loader_stain_augmentation_is_deterministic_per_seed_epoch_key(patch):
    hed = StainAugmentConfig(kind="hed", sigma=0.05, bias=0.01)
    first = _decode(patch, hed)
    assert np.array_equal(first, _decode(patch, hed))  # same (seed, epoch, key): same bytes
    geometric_only = _decode(patch, None)
    assert not np.array_equal(first, geometric_only)  # the stain jitter is applied on top of the flips
    # ... after the same flips/rotation: undoing the jitter's colour change leaves the same geometry
    assert np.corrcoef(first[..., 0].ravel(), geometric_only[..., 0].ravel())[0, 1] > 0.95
    assert not np.array_equal(first, _decode(patch, hed, epoch=1))
    assert not np.array_equal(first, _decode(patch, hed, key="s00002"))
    assert not np.array_equal(first, _decode(patch, hed, seed=1))


def test_off_is_byte_identical(patch):
    before = _decode(patch, None)  # what the loader did before stain augmentation existed
    assert np.array_equal(_decode(patch, StainAugmentConfig(kind="none", sigma=0.5, bias=0.1)), before)
    hed = StainAugmentConfig(kind="hed")
    # Evaluation and augment=false never jitter.
    assert np.array_equal(_decode(patch, hed, train=False), _decode(patch, None, train=False))
    assert np.array_equal(_decode(patch, hed, augment=False), _decode(patch, None, augment=False))


def test_profiles_turn_it_on_in_the_demo_only():
    from mmlnb_dist.config import load_config

    demo = load_config("cpu-demo", [])
    assert demo.data.loader.augment and demo.data.loader.stain.kind == "hed"
    for paper_faithful in ("rtx4090",):
        assert load_config(paper_faithful, []).data.loader.stain.kind == "none"

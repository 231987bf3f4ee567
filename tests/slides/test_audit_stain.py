"""Audit of stain normalisation (`slides.stain`): the numbers against hand-written numpy references of the two
methods (Macenko: stain vectors and 99th-percentile concentrations re-mixed onto the target's; Reinhard: each
CIE-LAB channel moved to the target's mean and standard deviation), the method picked by name, an RGBA target
fitted on its colour channels, and targets that are not usable images refused by name."""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.slides.stain import StainNormalizer, StainTargetError, load_rgb

IO, ALPHA, BETA = 240, 1, 0.15  # Macenko's background intensity, angle percentile and stained density


H_TARGET, E_TARGET = (0.65, 0.70, 0.29), (0.07, 0.99, 0.11)


def _stained(seed: int, h, e, h_scale: float, e_scale: float, size: int = 96) -> np.ndarray:
    """An H&E-like image of two stains of known optical-density vectors in random amounts, some pixels glass."""
    rng = np.random.default_rng(seed)
    conc = rng.gamma(2.0, 0.35, (size * size, 2)) * (h_scale, e_scale)
    conc[rng.random(size * size) < 0.2] = 0.0  # glass
    h, e = (np.asarray(v) / np.linalg.norm(v) for v in (h, e))
    od = conc @ np.stack([h, e]) + rng.normal(0, 0.01, (size * size, 3)) + 0.03
    return np.clip(255 * np.exp(-od), 0, 255).astype(np.uint8).reshape(size, size, 3)


TARGET = _stained(0, H_TARGET, E_TARGET, 1.0, 1.0)
TILE = _stained(1, (0.45, 0.85, 0.27), (0.25, 0.90, 0.37), 1.4, 0.6)


def _macenko_stains(rgb: np.ndarray):
    """(stain matrix, concentrations, 99th percentile concentrations) of Macenko et al. (ISBI 2009)."""
    od = -np.log((rgb.reshape(-1, 3).astype(np.float64) + 1.0) / IO)
    dense = od[(od >= BETA).all(axis=1)]
    _, vectors = np.linalg.eigh(np.cov(dense.T))
    plane = vectors[:, 1:3]  # the two largest eigenvalues
    angle = np.arctan2(*(dense @ plane).T[::-1])
    lo, hi = np.percentile(angle, [ALPHA, 100 - ALPHA])
    v_lo, v_hi = (plane @ np.array([np.cos(a), np.sin(a)]) for a in (lo, hi))
    he = np.stack([v_lo, v_hi] if v_lo[0] > v_hi[0] else [v_hi, v_lo], axis=1)  # haematoxylin: more red OD
    conc = np.linalg.lstsq(he, od.T, rcond=None)[0]
    return he, conc, np.percentile(conc, 99, axis=1)


def _macenko_reference(target: np.ndarray, tile: np.ndarray) -> np.ndarray:
    he_target, _, max_target = _macenko_stains(target)
    _, conc, max_tile = _macenko_stains(tile)
    mixed = IO * np.exp(-he_target @ (conc * (max_target / max_tile)[:, None]))
    return np.minimum(mixed, 255).T.reshape(tile.shape).astype(np.uint8)


def _reinhard_reference(target: np.ndarray, tile: np.ndarray) -> np.ndarray:
    from skimage.color import lab2rgb, rgb2lab

    lab_t, lab = rgb2lab(target / 255.0), rgb2lab(tile / 255.0)
    mean_t, std_t = lab_t.reshape(-1, 3).mean(0), lab_t.reshape(-1, 3).std(0)
    mean, std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)
    rgb = lab2rgb((lab - mean) / std * std_t + mean_t)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def test_macenko_matches_a_numpy_reference_and_takes_on_the_target_stains():
    out, used = StainNormalizer("macenko", TARGET)(TILE)
    assert used == "macenko" and out.dtype == np.uint8 and out.shape == TILE.shape
    ref = _macenko_reference(TARGET, TILE)
    assert np.abs(out.astype(int) - ref).max() <= 1
    he_target, _, max_target = _macenko_stains(TARGET)
    he_tile, _, _ = _macenko_stains(TILE)
    he_out, _, max_out = _macenko_stains(out)
    # the tile's own stain vectors are far from the target's; the normalised tile's are the target's
    assert np.abs(he_tile - he_target).max() > 0.1
    assert np.abs(he_out - he_target).max() < 0.05
    assert max_out == pytest.approx(max_target, rel=0.1)


def test_reinhard_matches_a_lab_reference_and_takes_on_the_target_statistics():
    from skimage.color import rgb2lab

    out, used = StainNormalizer("reinhard", TARGET)(TILE)
    assert used == "reinhard" and out.dtype == np.uint8 and out.shape == TILE.shape
    diff = np.abs(out.astype(int) - _reinhard_reference(TARGET, TILE))
    assert diff.max() <= 2 and diff.mean() < 0.5
    lab_t, lab_out, lab_in = (rgb2lab(x / 255.0).reshape(-1, 3) for x in (TARGET, out, TILE))
    assert np.abs(lab_out.mean(0) - lab_t.mean(0)).max() < 1.5 < np.abs(lab_in.mean(0) - lab_t.mean(0)).max()
    assert lab_out.std(0) == pytest.approx(lab_t.std(0), rel=0.1, abs=0.5)


def test_the_method_is_the_one_named_and_none_leaves_the_tile_alone():
    macenko = StainNormalizer("macenko", TARGET)(TILE)[0]
    reinhard = StainNormalizer("reinhard", TARGET)(TILE)[0]
    assert np.abs(macenko.astype(int) - reinhard).mean() > 2  # two different normalisations
    out, used = StainNormalizer("none", TARGET)(TILE)
    assert used == "none" and out is TILE
    with pytest.raises(ValueError, match="needs a target image"):
        StainNormalizer("reinhard")


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_an_rgba_target_is_fitted_on_its_colour_channels(method):
    rgba = np.concatenate([TARGET, np.full(TARGET.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    got, used = StainNormalizer(method, rgba)(TILE)
    assert used == method
    np.testing.assert_array_equal(got, StainNormalizer(method, TARGET)(TILE)[0])


def test_a_target_file_is_read_as_rgb_and_a_truncated_one_is_refused_by_name(tmp_path):
    from PIL import Image

    Image.fromarray(TARGET).convert("RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "rgba.png"), TARGET)
    Image.fromarray(TARGET).save(tmp_path / "t.png")
    cut = tmp_path / "cut.png"
    cut.write_bytes((tmp_path / "t.png").read_bytes()[:200])
    with pytest.raises(StainTargetError, match=rf"{cut}: cannot be read as an image"):
        load_rgb(cut)


@pytest.mark.parametrize("with_image", [True, False])
def test_the_default_target_is_the_installed_packages_image_only_when_the_file_is_there(tmp_path, monkeypatch,
                                                                                         with_image):
    import sys

    from mmlnb_dist.slides.stain import default_target_path

    package = tmp_path / "tiatoolbox"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    if with_image:
        (package / "data" / "target_image.png").write_bytes(b"png")
    monkeypatch.delitem(sys.modules, "tiatoolbox", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert default_target_path() == ((package / "data" / "target_image.png") if with_image else None)

"""Images in modes other than 8-bit RGB: a 16-bit greyscale PNG (what some scanners and exporters write) became
pure white through PIL's `convert("RGB")`, which clips 0..65535 at 255, and was trained on or predicted as a white
patch without a word; a 32-bit float or integer image became black or white the same way. Now 16-bit images keep
their picture (the high byte, exactly the 8-bit image they were scaled from) in decoding and in the shard build,
and 32-bit single-channel images, whose 0-255 range is not defined, are refused with the reason: skipped and
listed by the build, an unreadable input for predict."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.build import SampleSpec, build_shards
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.images import decode_image, read_image
from mmlnb_dist.data.reader import iter_shard_samples


def grey_ramp(size: int = 64) -> np.ndarray:
    """An 8-bit greyscale picture with every level from dark to light."""
    x = np.linspace(20, 235, size)
    return np.round(np.add.outer(x, x[::-1]) / 2).astype(np.uint8)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def tiff(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(arr)
    assert image.mode == mode
    image.save(buf, format="TIFF")
    return buf.getvalue()


def test_a_16_bit_greyscale_png_decodes_to_its_8_bit_picture():
    grey = grey_ramp()
    data = png(grey.astype(np.uint16) * 257)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    got = np.asarray(decode_image(data))
    assert got.shape == (64, 64, 3)
    np.testing.assert_array_equal(got, np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(np.asarray(read_image(data)), got)


def test_8_bit_images_decode_as_before():
    grey = grey_ramp()
    rgb = np.stack([grey, grey[::-1], grey.T], axis=2)
    np.testing.assert_array_equal(np.asarray(decode_image(png(rgb))), rgb)
    np.testing.assert_array_equal(np.asarray(decode_image(png(grey))), np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("mode, kind", [("F", "floating-point"), ("I", "integer")])
def test_a_32_bit_single_channel_image_is_refused_with_the_reason(mode, kind):
    grey = grey_ramp()
    data = tiff(grey.astype(np.float32) / 255.0 if mode == "F" else grey.astype(np.int32), mode)
    with pytest.raises(ValueError, match=f"32-bit {kind}.*8- or 16-bit"):
        decode_image(data)
    with pytest.raises(ValueError, match=f"32-bit {kind}"):
        read_image(data)


def test_the_shard_build_keeps_a_16_bit_picture_and_lists_a_32_bit_one_as_skipped(tmp_path):
    grey = grey_ramp()
    (tmp_path / "in").mkdir()
    paths = {"eight": png(grey), "sixteen": png(grey.astype(np.uint16) * 257),
             "float": tiff(grey.astype(np.float32) / 255.0, "F")}
    specs = []
    for key, data in paths.items():
        path = tmp_path / "in" / f"{key}.{'tif' if key == 'float' else 'png'}"
        path.write_bytes(data)
        specs.append(SampleSpec(key=key, label="A", image=path))
    build = BuildConfig(val_fraction=0.0, image_format="png", image_size=64, max_skipped_rate=0.5,
                        group_by_slide=False, stratify=False)
    manifest = build_shards(specs, tmp_path / "shards", build, classes=["A"], progress=False)
    assert [s["key"] for s in manifest["skipped"]] == ["float"]
    assert "32-bit floating-point" in manifest["skipped"][0]["reason"]
    stored = {s["__key__"]: np.asarray(Image.open(io.BytesIO(s["png"])))
              for tar in sorted((tmp_path / "shards").glob("**/*.tar")) for s in iter_shard_samples(tar)}
    assert set(stored) == {"eight", "sixteen"}
    np.testing.assert_array_equal(stored["sixteen"], stored["eight"])
    assert stored["sixteen"].mean() == pytest.approx(grey.mean(), abs=1)


# -- transparency ---------------------------------------------------------------------------------------------------
# Patch exporters write RGBA PNGs whose area outside the tissue or annotation is transparent, with RGB 0 there (QuPath
# and OpenSlide's read_region give (0, 0, 0, 0)). `convert("RGB")` drops the alpha, so that area became black: a
# patch the tiler would have written on white (slides/reader.py composites over white) was trained on and predicted
# as a patch with black background. Every decode now composites over white, as the tiler does.

def with_transparent_corner(rgb: np.ndarray) -> np.ndarray:
    """`rgb` as RGBA: opaque, except a transparent (0, 0, 0, 0) top-left quarter and a half-transparent strip."""
    h, w, _ = rgb.shape
    rgba = np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], axis=2)
    rgba[: h // 2, : w // 2] = 0
    rgba[-4:, :, 3] = 128
    return rgba


def on_white(rgba: np.ndarray) -> np.ndarray:
    """The reference composite: colour * a + white * (1 - a), rounded."""
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    return np.floor(rgba[..., :3] * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)


def rgb_picture(size: int = 64) -> np.ndarray:
    grey = grey_ramp(size)
    return np.stack([grey, grey[::-1], grey.T], axis=2)


def test_a_transparent_area_decodes_white_as_the_tiler_writes_it():
    rgba = with_transparent_corner(rgb_picture())
    got = np.asarray(decode_image(png(rgba)))
    assert got.shape == (64, 64, 3)
    assert (got[:32, :32] == 255).all(), "the transparent quarter must be white, not black"
    np.testing.assert_array_equal(got, on_white(rgba))
    np.testing.assert_array_equal(np.asarray(read_image(png(rgba))), got)


def test_slides_and_patches_share_one_composite():
    from mmlnb_dist.data.images import composite_on_white

    rgba = with_transparent_corner(rgb_picture())
    np.testing.assert_array_equal(composite_on_white(rgba), on_white(rgba))
    np.testing.assert_array_equal(composite_on_white(rgba[..., :3]), rgba[..., :3])


@pytest.mark.parametrize("mode", ["LA", "P"])
def test_greyscale_with_alpha_and_palette_transparency_decode_white(mode):
    grey = grey_ramp()
    if mode == "LA":
        la = np.stack([grey, np.full_like(grey, 255)], axis=2)
        la[:32, :32] = 0
        image = Image.fromarray(la, mode="LA")
        expected = np.repeat(grey[..., None], 3, axis=2)
    else:  # a palette image whose index 0 is the transparent colour (black)
        image = Image.fromarray(rgb_picture()).quantize(colors=16)
        image.putpixel((0, 0), 0)
        image.info["transparency"] = 0
        expected = np.asarray(image.convert("RGB")).copy()
        idx = np.asarray(image)
        expected[idx == 0] = 255
    buf = io.BytesIO()
    image.save(buf, format="PNG", **({"transparency": 0} if mode == "P" else {}))
    got = np.asarray(decode_image(buf.getvalue()))
    if mode == "LA":
        expected[:32, :32] = 255
    np.testing.assert_array_equal(got, expected)


def test_the_shard_build_stores_a_transparent_area_white(tmp_path):
    rgba = with_transparent_corner(rgb_picture())
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "patch.png"
    path.write_bytes(png(rgba))
    build = BuildConfig(val_fraction=0.0, image_format="png", image_size=64, group_by_slide=False, stratify=False)
    build_shards([SampleSpec(key="patch", label="A", image=path)], tmp_path / "shards", build, classes=["A"],
                 progress=False)
    stored = [np.asarray(Image.open(io.BytesIO(s["png"])))
              for tar in sorted((tmp_path / "shards").glob("**/*.tar")) for s in iter_shard_samples(tar)]
    assert len(stored) == 1
    np.testing.assert_array_equal(stored[0], on_white(rgba))

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

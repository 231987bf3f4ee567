"""A patch whose JPEG carries an EXIF orientation tag (a phone or camera export stores the pixels unrotated and
says "rotate 90 degrees" in the tag) is built as it is displayed: it was built unrotated, so its sample showed
the tissue on its side, unlike the same patch in every viewer."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mmlnb_dist.data import build as B
from mmlnb_dist.data.config import BuildConfig

RED, BLUE = (220, 30, 30), (30, 30, 220)


def _tagged_jpeg(path, orientation):
    """64 x 32 stored pixels, left half red, right half blue; displayed as `orientation` says."""
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, :32], pixels[:, 32:] = RED, BLUE
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def _built(path, fmt="png"):
    ext, data = B._encode(B.SampleSpec(key="k", label="UD", image=path), BuildConfig(image_format=fmt, image_size=32))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _near(pixel, colour):
    return np.abs(pixel - np.array(colour)).max() < 40


def test_orientation_6_is_built_rotated_as_displayed(tmp_path):
    # displayed 32 wide x 64 high (turned 90 degrees clockwise): red on top, blue below
    for fmt in ("png", "jpeg"):
        img = _built(_tagged_jpeg(tmp_path / "p.jpg", 6), fmt)
        assert img.shape == (32, 32, 3)
        assert _near(img[3, 16], RED) and _near(img[28, 16], BLUE), (fmt, img[3, 16], img[28, 16])


def test_an_upright_patch_is_built_as_before(tmp_path):
    img = _built(_tagged_jpeg(tmp_path / "p.jpg", 1))
    assert _near(img[16, 3], RED) and _near(img[16, 28], BLUE), (img[16, 3], img[16, 28])


def test_an_original_kept_in_the_shards_and_a_served_image_decode_as_displayed(tmp_path):
    """`image_format=original` keeps the camera's bytes, tag included: training decodes them (decode_image), and
    a served model reads a phone photo (read_image); both gave the unrotated pixels, unlike a re-encoded build."""
    from mmlnb_dist.data.images import decode_image, read_image

    path = _tagged_jpeg(tmp_path / "p.jpg", 6)
    for img in (decode_image(path.read_bytes()), decode_image(path.read_bytes(), 16), read_image(str(path))):
        pixels = np.asarray(img).astype(int)
        h, w = pixels.shape[:2]
        assert h == 2 * w, pixels.shape  # displayed upright: twice as high as wide
        assert _near(pixels[h // 8, w // 2], RED) and _near(pixels[7 * h // 8, w // 2], BLUE)

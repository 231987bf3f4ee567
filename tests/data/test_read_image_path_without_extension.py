"""A served model's `image` value that names an existing file is read as that file whatever its name (a patch
saved without an image extension, `/data/patch_001`), never decoded as base64; a value that is neither an existing
file nor base64 says both."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.images import BadRequest, read_image, read_request

PIXELS = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(PIXELS).save(buf, format="PNG")
    return buf.getvalue()


def test_an_existing_file_without_an_image_extension_is_read_as_a_file(tmp_path):
    (tmp_path / "patch_001").write_bytes(_png())
    (tmp_path / "patch.v2").write_bytes(_png())
    for name in ("patch_001", "patch.v2"):
        assert np.array_equal(np.asarray(read_image(str(tmp_path / name))), PIXELS)
    got = read_request({"image": [str(tmp_path / "patch_001")]})["images"][0]
    assert np.array_equal(np.asarray(got), PIXELS)


def test_base64_text_is_still_decoded():
    assert np.array_equal(np.asarray(read_image(base64.b64encode(_png()).decode())), PIXELS)


def test_neither_a_file_nor_base64_says_both(tmp_path):
    missing = str(tmp_path / "patch_002")
    with pytest.raises(BadRequest, match=r"row 0: .*no such file.*and not base64-encoded image bytes"):
        read_request({"image": [missing]})
    with pytest.raises(ValueError, match=r"no such file.*patch_002.*and not base64-encoded image bytes"):
        read_image(missing)


def test_a_folder_is_not_read_as_base64(tmp_path):
    """A folder is not a file: it is refused as neither a file nor base64, not with a decoder's padding error."""
    with pytest.raises(ValueError, match=r"no such file.*and not base64-encoded image bytes"):
        read_image(str(tmp_path))

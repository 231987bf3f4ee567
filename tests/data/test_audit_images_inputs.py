"""Audit of `data.images`' input side: which member of a sample is its image, which file is a whole slide, and what a
served model reads from a request (`read_image`, `read_request`): the same picture from a path, bytes or base64, an
unreadable input refused with its reason (a missing file, a whole slide over PIL's limit), a missing description
read as "" (never the text "nan") and refused where the model reads one, and JPEGs decoded at the model's size as
the training loader decodes them."""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmlnb_dist.data.images import (MissingDescriptions, decode_image, image_member, is_slide_file, read_image,
                                    read_request)


def _encoded(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


PIXELS = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)


def test_the_first_listed_image_member_wins():
    """A sample holding two image members is read from the first of IMAGE_EXTENSIONS (jpg before png)."""
    assert image_member({"__key__": "k", "png": b"", "jpg": b"", "cls": b"0"}) == "jpg"
    assert image_member({"tif": b"", "webp": b""}) == "tif"
    assert image_member({"cls": b"0", "json": b"{}"}) is None


@pytest.mark.parametrize("name, slide", [("a.svs", True), ("B.NDPI", True), ("c.mrxs", True), ("d.tif", False),
                                         ("e.TIFF", False), ("f.png", False), ("svs", False)])
def test_a_tif_is_a_plain_image_not_a_whole_slide(name, slide):
    """.tif/.tiff may be a plain patch: only the slide-only suffixes (any case) make a whole-slide file."""
    assert is_slide_file(name) is slide


def test_a_path_raw_bytes_and_base64_give_the_same_picture(tmp_path):
    data = _encoded(PIXELS)
    (tmp_path / "p.png").write_bytes(data)
    for value in (str(tmp_path / "p.png"), data, bytearray(data), base64.b64encode(data).decode()):
        assert np.array_equal(np.asarray(read_image(value)), PIXELS)


def test_unreadable_inputs_are_refused_with_their_reason(tmp_path):
    """A missing file is named as missing (not an OSError's text); bytes that are no image and text that is
    neither a path nor base64 are "not a readable image"; another type is named."""
    with pytest.raises(ValueError, match=r"^file not found: .*gone\.png$"):
        read_image(str(tmp_path / "gone.png"))
    with pytest.raises(ValueError, match=r"^not a readable image \(UnidentifiedImageError"):
        read_image(b"not an image")
    with pytest.raises(ValueError, match=r"^not a readable image \(Error: "):  # binascii.Error
        read_image("no base64 here!")
    with pytest.raises(ValueError, match="unsupported image value of type int"):
        read_image(3)


def test_an_image_over_pils_pixel_limit_is_named_a_whole_slide_to_tile(monkeypatch):
    """PIL's DecompressionBombError (an image over its pixel limit) tells the user to tile it, with its size."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # a 6 x 6 PNG (36 pixels) is over twice the limit
    with pytest.raises(ValueError, match=r"too large to decode \(36 pixels, over PIL's limit\).*slides tile"):
        read_image(_encoded(np.zeros((6, 6, 3), np.uint8)))


def test_a_request_without_descriptions_reads_empty_text_and_its_ids():
    """NaN and None (how pandas and JSON spell "no description") are "", never the text "nan"."""
    data = base64.b64encode(_encoded(PIXELS)).decode()
    frame = pd.DataFrame({"image": [data, data, data], "description": ["tumour", np.nan, None],
                          "key": ["a", None, "c"]})
    out = read_request(frame)
    assert out["texts"] == ["tumour", "", ""] and out["keys"] == ["a", None, "c"]
    assert out["slide_ids"] == [None, None, None]
    assert all(np.array_equal(np.asarray(img), PIXELS) for img in out["images"])
    assert read_request({"image": [data]})["texts"] == [""]  # no description column at all
    with pytest.raises(ValueError, match="'image' column"):
        read_request(pd.DataFrame({"description": ["x"]}))


def test_a_model_that_reads_descriptions_refuses_rows_without_one():
    """Blank text (spaces only, NaN, absent) is refused with the count and the first row and key; the same rows
    are read when the model reads no description."""
    data = base64.b64encode(_encoded(PIXELS)).decode()
    frame = pd.DataFrame({"image": [data] * 3, "description": ["tumour", "   ", np.nan], "key": ["a", "b", "c"]})
    with pytest.raises(MissingDescriptions, match=r"2 of 3 rows have none \(first: row 1, key b\)"):
        read_request(frame, require_text=True)
    assert len(read_request(frame)["images"]) == 3
    assert read_request(frame.iloc[:1], require_text=True)["texts"] == ["tumour"]


def test_a_request_decodes_a_large_jpeg_at_the_models_size_as_training_does():
    """With the model's input size, a JPEG four times larger is DCT-scaled exactly as the loader's decode_image
    (not decoded at full size)."""
    big = np.kron(np.random.default_rng(1).integers(0, 256, (16, 16, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    data = _encoded(big, "JPEG")
    got = read_request({"image": [base64.b64encode(data).decode()]}, size=64)["images"][0]
    assert got.size == (64, 64)
    assert np.array_equal(np.asarray(got), np.asarray(decode_image(data, 64)))
    assert read_request({"image": [data]})["images"][0].size == (256, 256)

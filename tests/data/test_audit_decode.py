"""Audit of sample decoding (`data.preprocess`): a label the shard set does not define (a class index one past the
last, an empty or unknown label set) is a bad sample (ValueError), never a silently wrong target; a corrupt image is
refused with the reason; images are normalised with the configured mean and std (torchvision's Normalize)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from mmlnb_dist.data.preprocess import ClassIndexLabel, ImageSamplePreprocess, MultiHotLabel, SampleContext


@pytest.mark.parametrize("cls", [b"3", b"-1", b"x", None])
def test_a_class_index_outside_the_classes_is_a_bad_sample(cls):
    raw = {"__key__": "k"} if cls is None else {"__key__": "k", "cls": cls}
    with pytest.raises(ValueError):
        ClassIndexLabel(["a", "b", "c"])(raw, {})


def test_class_indexes_inside_the_classes_decode():
    assert [ClassIndexLabel(["a", "b", "c"])({"cls": str(i).encode()}, {}) for i in range(3)] == [0, 1, 2]


@pytest.mark.parametrize("labels", [[], ["zz"], "a", None])
def test_an_empty_or_unknown_label_set_is_a_bad_sample(labels):
    meta = {} if labels is None else {"labels": labels}
    with pytest.raises(ValueError):
        MultiHotLabel(["a", "b", "c"])({}, meta)


def test_a_label_set_decodes_to_its_multi_hot_vector():
    hot = MultiHotLabel(["a", "b", "c"])({}, {"labels": ["c", "a"]})
    assert hot.dtype == np.float32 and hot.tolist() == [1.0, 0.0, 1.0]


def _png(pixels):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_refuses_corrupt_and_missing_images_and_normalises_with_the_configured_mean_std():
    """Corrupt bytes and a sample without an image are ValueErrors with the reason; a good image comes out as
    torchvision's ToTensor + Normalize(mean, std) of its pixels."""
    from torchvision.transforms import Normalize

    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    pre = ImageSamplePreprocess(8, ClassIndexLabel(["a", "b"]), augment=False, mean=mean, std=std)
    ctx = SampleContext(0, 0, False)
    with pytest.raises(ValueError, match="image not decodable"):
        pre.decode({"__key__": "bad", "png": b"\x89PNG\r\n\x1a\ngarbage", "cls": b"0"}, ctx)
    with pytest.raises(ValueError, match="no image member"):
        pre.decode({"__key__": "none", "cls": b"0"}, ctx)
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    sample = pre.decode({"__key__": "good", "png": _png(pixels), "cls": b"1"}, ctx)
    assert np.array_equal(sample["image"], pixels) and sample["label"] == 1 and sample["key"] == "good"
    batch = pre.finalize(pre.collate([sample]))
    reference = Normalize(mean, std)(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0)
    torch.testing.assert_close(batch["image"][0], reference, atol=2e-6, rtol=0)


@pytest.mark.parametrize("fmt, dtype", [("PNG", "<u2"), ("TIFF", "<u2"), ("TIFF", ">u2")])
def test_a_16_bit_image_decodes_to_its_high_byte_whatever_its_low_byte(fmt, dtype):
    """A real 16-bit picture (low byte not a copy of the high byte): each pixel becomes value >> 8, its 8-bit level
    (numpy's reference), never the low byte or a clipped white."""
    from PIL import Image

    from mmlnb_dist.data.images import decode_image

    rng = np.random.default_rng(1)
    values = rng.integers(0, 65536, (16, 16)).astype(dtype)
    assert ((values >> 8) != (values & 0xFF)).mean() > 0.9
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, format=fmt)
    got = np.asarray(decode_image(buf.getvalue()))
    np.testing.assert_array_equal(got, np.repeat((values.astype(np.uint16) >> 8).astype(np.uint8)[..., None], 3, 2))


def _png_header(width, height):
    """A PNG claiming `width` x `height` (8-bit RGB): enough for PIL to open it."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_decompression_bomb_or_odd_json_is_a_bad_sample_not_a_crash():
    """Whatever a decoder raises (PIL's DecompressionBombError is no OSError) is a bad sample with the reason; a
    `json` member that is not an object is no metadata, not an AttributeError in the worker."""
    from mmlnb_dist.data.preprocess import sample_meta

    pre = ImageSamplePreprocess(8, ClassIndexLabel(["a", "b"]), augment=False, mean=(0, 0, 0), std=(1, 1, 1))
    ctx = SampleContext(0, 0, False)
    with pytest.raises(ValueError, match="image not decodable \\(DecompressionBombError"):
        pre.decode({"__key__": "bomb", "png": _png_header(30000, 30000), "cls": b"0"}, ctx)
    for text in (b"[1, 2]", b"\"text\"", b"{not json", b"\xff\xfe"):
        assert sample_meta({"json": text}) == {}
    pixels = np.zeros((8, 8, 3), np.uint8)
    out = pre.decode({"__key__": "k", "png": _png(pixels), "cls": b"0", "json": b"[1, 2]"}, ctx)
    assert out["slide_id"] is None and out["label"] == 0


def test_hidden_files_and_folders_are_not_images(tmp_path):
    """macOS `._x.png` resource forks and `.ipynb_checkpoints/` copies are never patches; other images at any
    depth are, sorted."""
    from mmlnb_dist.data.images import image_files

    for rel in ("b/x.png", "a.JPG", "._a.png", ".ipynb_checkpoints/a.png", "b/.hidden/y.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)] == ["a.JPG", "b/x.png"]

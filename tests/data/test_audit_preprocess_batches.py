"""Audit of what a decoded sample and a batch hold (`data.preprocess`): the description ("" when absent, a bad byte
replaced rather than the sample lost, no text at all for a recipe that reads none), the slide id from the sample's
metadata, an unparsable class index named as such, and the batch types (labels long, float fields float32, other
values kept as lists)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmlnb_dist.data.preprocess import ClassIndexLabel, ImageSamplePreprocess, SampleContext, collate_samples


def _raw(key="k", **members):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    return {"__key__": key, "png": buf.getvalue(), "cls": b"1", **members}


def _pre(text=True):
    return ImageSamplePreprocess(8, ClassIndexLabel(["a", "b"]), augment=False, mean=(0, 0, 0), std=(1, 1, 1),
                                 text=text)


CTX = SampleContext(0, 0, False)


def test_a_description_is_read_and_empty_when_absent_and_a_bad_byte_does_not_lose_the_sample():
    pre = _pre()
    assert pre.decode(_raw(txt="Nests of cells.".encode()), CTX)["text"] == "Nests of cells."
    assert pre.decode(_raw(), CTX)["text"] == ""
    assert pre.decode(_raw(txt=b"caf\xe9 cells"), CTX)["text"] == "caf\ufffd cells"


def test_a_recipe_without_text_gets_no_text_field():
    out = _pre(text=False).decode(_raw(txt=b"ignored"), CTX)
    assert "text" not in out and out["label"] == 1 and out["key"] == "k"


def test_the_slide_id_comes_from_the_json_member():
    out = _pre().decode(_raw(json=json.dumps({"slide_id": "slide-007", "label": "b"}).encode()), CTX)
    assert out["slide_id"] == "slide-007"
    assert _pre().decode(_raw(slide_id=b"not-read"), CTX)["slide_id"] is None


def test_an_unparsable_class_index_is_named_as_such():
    with pytest.raises(ValueError, match=r"missing or invalid cls b'x'"):
        ClassIndexLabel(["a", "b"])({"cls": b"x"}, {})
    with pytest.raises(ValueError, match=r"missing or invalid cls None"):
        ClassIndexLabel(["a", "b"])({}, {})


def test_collate_types_numpy_scalars_as_python_ones():
    """np.int64 / bool labels become a long tensor, np.float64 values float32 (as Python floats do), arrays are
    stacked, strings and None stay lists."""
    samples = [{"image": np.full((2, 2, 3), i, np.uint8), "label": np.int64(i), "flag": bool(i),
                "weight": np.float64(0.5 * i), "score": 0.25 * i, "key": f"k{i}", "slide_id": None} for i in range(3)]
    batch = collate_samples(samples)
    assert batch["image"].shape == (3, 2, 2, 3) and batch["image"].dtype == torch.uint8
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == [0, 1, 2]
    assert batch["flag"].dtype == torch.long and batch["flag"].tolist() == [0, 1, 1]
    assert batch["weight"].dtype == torch.float32 and batch["weight"].tolist() == [0.0, 0.5, 1.0]
    assert batch["score"].dtype == torch.float32
    assert batch["key"] == ["k0", "k1", "k2"] and batch["slide_id"] == [None, None, None]

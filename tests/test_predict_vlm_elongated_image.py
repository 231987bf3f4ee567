"""`predict --vlm` with a patch Qwen2.5-VL's processor refuses (aspect ratio above 200:1): listed as unreadable with
the reason, as describe skips it, and the other inputs are described and predicted. It reached the processor, whose
ValueError stopped the whole job (after hours of descriptions, at the chunk that held it)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.predict_stand_in import StandIn


def test_an_elongated_patch_is_listed_unreadable_and_the_rest_predicted(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, (h, w) in {"a": (16, 16), "strip": (2, 600), "c": (20, 12)}.items():
        Image.fromarray(np.full((h, w, 3), 120, dtype=np.uint8)).save(folder / f"{name}.png")

    def qwen_like(images):  # what Qwen2.5-VL's processor does with such an image (`smart_resize`)
        if any(max(im.size) / min(im.size) > 200 for im in images):
            raise ValueError("absolute aspect ratio must be smaller than 200")
        return ["a patch" for _ in images]

    monkeypatch.setattr(predict_run, "_vlm_describer", lambda *a: qwen_like)
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn({"reads_text": True}))
    report = predict_to_file("models:/stand-in@champion", [folder], tmp_path / "p.jsonl", vlm="tiny")
    assert report["predicted"] == 2
    assert [(s.rsplit("/", 1)[-1], "aspect ratio" in why) for s, why in report["failed"]] == [("strip.png", True)]

"""`predict --vlm` judges its descriptions' writer as describe does (`data.text_writer.same_writer`): by the base
VLM's weight bytes (`model_weights`), not its name. A model trained on a local folder's descriptions, fed text that
a copy of the same weights elsewhere writes, was warned about (another name); a folder whose weights were replaced
since writes other text under the same name, which passed without a word (and resumed the same journal)."""
from __future__ import annotations

import shutil

import pytest

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run
from mmlnb_dist.recipes.vlm.weights_identity import weights_digest

from support.predict_stand_in import StandIn, images_with_a_broken_one

MODEL = "models:/stand-in@champion"


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """A base VLM folder, and a stand-in model trained on the descriptions it wrote (describe's record of it)."""
    base = tmp_path / "qwen"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"the base weights")
    images = images_with_a_broken_one(tmp_path / "in", ["a", "c"])
    monkeypatch.setattr(predict_run, "_vlm_describer", lambda *a: lambda imgs: ["a patch" for _ in imgs])
    meta = {"reads_text": True, "descriptions_written_by": {"model": str(base), "adapter_sha256": None,
                                                            "model_weights": weights_digest(base)}}
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn(meta))
    return base, images


def test_a_copy_of_the_training_weights_elsewhere_is_the_same_writer(trained, tmp_path):
    base, images = trained
    copy = shutil.copytree(base, tmp_path / "elsewhere" / "qwen-copy")
    report = predict_to_file(MODEL, [images], tmp_path / "p.jsonl", vlm=str(copy))
    assert report["predicted"] == 2 and report["warnings"] == []


def test_a_folder_whose_weights_were_replaced_is_another_writer(trained, tmp_path):
    base, images = trained
    (base / "model.safetensors").write_bytes(b"other weights!!!")  # the same name and size
    report = predict_to_file(MODEL, [images], tmp_path / "p.jsonl", vlm=str(base))
    assert report["predicted"] == 2 and len(report["warnings"]) == 1 and "2 of 2 images" in report["warnings"][0]

"""File names that are not UTF-8 (a folder unpacked from an archive made on Windows or an old Mac: `caf\\xe9.png`).
Python reads such a name with a lone surrogate in it, which pandas (its Arrow strings), the CSV and the JSON
writers cannot encode: `predict` on such a folder ended in a UnicodeEncodeError traceback, no image of the folder
predicted. Now the name is given in the output as the bytes it has, escaped (`caf\\xe9.png`), and every image is
predicted."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.predict_stand_in import StandIn

MODEL = "models:/stand-in@champion"


@pytest.fixture
def folder(tmp_path):
    """`ok.png`, `caf\\xe9.png` (a Latin-1 name) and `b\\xe9d.png` (a Latin-1 name, not an image)."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    try:
        for name in (b"ok.png", b"caf\xe9.png"):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(os.fsencode(folder) + b"/" + name)
        Path(os.fsdecode(os.fsencode(folder) + b"/b\xe9d.png")).write_bytes(b"not an image")
    except (OSError, UnicodeError):  # a file system that takes UTF-8 names only
        pytest.skip("this file system refuses names that are not UTF-8")
    return folder


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_images_whose_names_are_not_utf8_are_predicted_and_named_escaped(folder, tmp_path, monkeypatch, suffix):
    model = StandIn()
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: model)
    out = tmp_path / f"p{suffix}"
    report = predict_to_file(MODEL, [folder], out)
    rows = (pd.read_csv(out) if suffix == ".csv" else
            pd.DataFrame([json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]))
    assert rows["key"].tolist() == ["caf\\xe9", "ok"] and report["predicted"] == 2
    assert rows["source"].tolist() == [f"{folder}/caf\\xe9.png", f"{folder}/ok.png"]
    assert [src for src, _ in report["failed"]] == [f"{folder}/b\\xe9d.png"]
    skipped = Path(report["skipped_out"])  # (valid UTF-8, as the outputs are)
    listed = (pd.read_csv(skipped)["input"].tolist() if suffix == ".csv" else
              [json.loads(line)["input"] for line in skipped.read_text(encoding="utf-8").splitlines()])
    assert listed == [f"{folder}/b\\xe9d.png"]

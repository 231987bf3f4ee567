"""`predict` on labelled shards says how the predictions agree with the labels. A user who ran the pipeline's
printed `predict` line on the held-out shards got a file of predicted classes and nothing to check them against:
the shards' labels were dropped on reading. Now every row of a labelled shard keeps its `true_label`, each slide
its majority true label, and the command prints accuracy and balanced accuracy over those rows (and per slide);
inputs without labels (plain image files) get neither column nor line."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from mmlnb_dist.cli import main

from support.fusion import registered_model

MODEL = "models:/nb-truth@champion"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return registered_model(tmp_path_factory.mktemp("truth"), "nb-truth")


def _shard_labels(shards: Path, split: str):
    """{key: (label, slide_id)} read straight from the split's tar files (not the package's reader)."""
    manifest = json.loads((shards / "manifest.json").read_text())
    out = {}
    for shard in manifest["splits"][split]["shards"]:
        with tarfile.open(shards / shard["file"]) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                if ext == "json":
                    meta = json.loads(tar.extractfile(member).read())
                    out[key] = (meta["label"], meta.get("slide_id"))
    return out


def test_predict_on_labelled_shards_keeps_the_labels_and_prints_the_agreement(trained, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", MODEL, str(trained["shards"]), "--split", "val", "--out", str(out),
                 "--uri", trained["uri"]]) == 0
    printed = capsys.readouterr().out
    rows = pd.read_csv(out, keep_default_na=False)
    truth = _shard_labels(trained["shards"], "val")
    assert len(rows) == len(truth) == trained["n_val"]
    assert {k: t for k, t in zip(rows["key"], rows["true_label"])} == {k: v[0] for k, v in truth.items()}
    acc = accuracy_score(rows["true_label"], rows["label"])
    bacc = balanced_accuracy_score(rows["true_label"], rows["label"])
    assert (f"against the labels of {len(rows)} patch(es): accuracy {acc:.3f}, balanced accuracy {bacc:.3f}"
            in printed), printed

    slides = pd.read_csv(out.with_name("preds.slides.csv"), keep_default_na=False)
    by_slide = {}
    for key, (label, slide) in truth.items():
        by_slide.setdefault(slide, []).append(label)
    want = {s: max(sorted(set(ls)), key=ls.count) for s, ls in by_slide.items()}
    assert dict(zip(slides["slide_id"], slides["true_label"])) == want
    slide_acc = accuracy_score(slides["true_label"], slides["label_majority"])
    assert f"per slide ({len(slides)}, majority vote): accuracy {slide_acc:.3f}" in printed, printed


def test_plain_image_files_get_no_true_label_and_no_agreement_line(trained, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 90, 160)).save(folder / f"p{i}.png")
    descriptions = tmp_path / "d.csv"
    descriptions.write_text("path,description\n" + "".join(f"{folder / f'p{i}.png'},dense small round cells\n"
                                                         for i in range(3)))
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", MODEL, str(folder), "--descriptions", str(descriptions), "--out", str(out),
                 "--uri", trained["uri"]]) == 0
    assert "true_label" not in pd.read_csv(out).columns
    assert "against the labels" not in capsys.readouterr().out

"""Slides to shards on synthetic pyramidal TIFFs (one class per slide, background, a blurred band)."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from mmlnb_dist.config import load_config

SIDE = 2048  # level-0 pixels at 0.5 um/px; cells of 256 px; levels 1 and 4


def _write_slides(folder: Path, per_class: int = 3) -> dict:
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    layouts, rows = {}, ["slide_id,label"]
    for c, label in enumerate(("UD", "PD", "D")):
        for k in range(per_class):
            sid = f"{label}-{k}"
            layouts[sid] = write_synthetic_slide(folder / f"{sid}.tif", label, width=SIDE, height=SIDE,
                                                 seed=10 * c + k, pool_size=4, downsamples=(1, 4))
            rows.append(f"{sid},{label}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return layouts


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth_wsi")
    return folder, _write_slides(folder)


def _cfg(*overrides: str):
    return load_config(None, ["slides.sampling.max_tiles_per_slide=null", "data.build.val_fraction=0.34",
                              "data.build.image_size=128", *overrides])


def _tile(folder: Path, out: Path, *overrides: str):
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = _cfg(*overrides)
    return tile_slides(cfg.slides, cfg.data.build, folder, folder / "labels.csv", out, cfg.data.classes,
                       progress=False)


def _digest(out: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


def _samples(out: Path, split: str):
    from mmlnb_dist.data.reader import iter_shard_samples

    for tar in sorted(out.glob(f"{split}-*.tar")):
        yield from iter_shard_samples(tar)


@pytest.fixture(scope="module")
def tiled(slides, tmp_path_factory):
    folder, _ = slides
    out = tmp_path_factory.mktemp("synth_shards") / "synth"
    return out, _tile(folder, out)


def test_openslide_reads_synthetic_pyramid(slides):
    from mmlnb_dist.slides.reader import SlideReader

    folder, _ = slides
    with SlideReader(folder / "UD-0.tif") as reader:
        assert reader.vendor == "generic-tiff" and reader.mpp == pytest.approx(0.5)
        assert reader.level_downsamples == (1.0, 4.0)
        assert reader.best_level(4.0) == 1 and reader.best_level(3.9) == 0 and reader.best_level(8.0) == 1


def test_automatic_mask_keeps_only_sharp_tissue(tiled, slides):
    """With the detected mask: kept tiles lie on sharp tissue; tiles on the blurred band are rejected as blur."""
    _, layouts = slides
    out, report = tiled
    assert report.ok
    work = out.with_name(out.name + ".work")
    for r in report.results:
        layout = layouts[r["slide_id"]]
        assert r["kept"] >= 12 and r["rejected"]["blur"] >= 1, r
        for line in (work / "slides" / r["slide_id"] / "tiles.jsonl").read_text().splitlines():
            meta = json.loads(line)["meta"]
            assert layout.region_of_tile(meta["x"], meta["y"], meta["size0"]) in ("tissue", "mixed")
        for line in (work / "slides" / r["slide_id"] / "rejected.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if layout.region_of_tile(rec["x"], rec["y"], 256) == "blurred":
                assert rec["reason"] == "blur"
    pictures = sorted((out / "qc" / "pictures").glob("*.png"))
    assert len(pictures) == len(layouts)
    summary = (out / "qc" / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("slide_id,label,status") and len(summary) == 1 + len(layouts)


def test_whole_slide_mask_rejects_background_and_blur_with_reason(slides, tmp_path):
    """A corrected mask covering the whole slide makes every tile a candidate: QC alone must sort them."""
    folder, layouts = slides
    masks = tmp_path / "masks"
    masks.mkdir()
    square = [[0, 0], [SIDE, 0], [SIDE, SIDE], [0, SIDE], [0, 0]]
    for sid in layouts:
        (masks / f"{sid}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]}, "properties": {}}]}))
    out = tmp_path / "whole"
    report = _tile(folder, out, f"slides.mask_dir={masks}")
    work = out.with_name(out.name + ".work")
    counts = {"background": 0, "blurred": 0}
    for r in report.results:
        layout = layouts[r["slide_id"]]
        assert r["candidates"] == (SIDE // 256) ** 2
        kept = [json.loads(l)["meta"] for l in (work / "slides" / r["slide_id"] / "tiles.jsonl").read_text().splitlines()]
        rejected = [json.loads(l) for l in (work / "slides" / r["slide_id"] / "rejected.jsonl").read_text().splitlines()]
        assert all(layout.region_of_tile(m["x"], m["y"], 256) == "tissue" for m in kept)
        for rec in rejected:
            region = layout.region_of_tile(rec["x"], rec["y"], 256)
            if region in counts:
                counts[region] += 1
                assert rec["reason"] == {"background": "background", "blurred": "blur"}[region], rec
        # Every background and blurred cell was rejected (none kept).
        n_bg = int((~layout.tissue).sum())
        assert r["rejected"]["background"] == n_bg
    assert counts["background"] > 100 and counts["blurred"] > 10


def test_grouped_split_keeps_slides_whole(tiled):
    out, _ = tiled
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"]["group_by_slide"] is True
    where: dict = {}
    for split in ("train", "val"):
        for s in _samples(out, split):
            where.setdefault(json.loads(s["json"])["slide_id"], set()).add(split)
    assert len(where) == 9 and all(len(v) == 1 for v in where.values())
    val_slides = {sid for sid, v in where.items() if "val" in v}
    assert {sid.split("-")[0] for sid in val_slides} == {"UD", "PD", "D"}  # stratified by slide label


def _features(jpg: bytes) -> np.ndarray:
    """Colour-free texture features: dark-pixel (nuclei) share at 3 levels, grey std, Laplacian var, edges."""
    import cv2
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(jpg)).convert("L")).astype(np.float32)
    norm = (grey - grey.mean()) / (grey.std() + 1e-6)
    dark = [float((norm < t).mean()) for t in (-0.5, -1.0, -1.5)]
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    edges = cv2.Canny(grey.astype(np.uint8), 40, 100)
    blobs = cv2.connectedComponents((norm < -1.0).astype(np.uint8))[0]
    return np.array(dark + [grey.std(), np.log1p(lap.var()), float((edges > 0).mean()), np.log1p(blobs)])


def test_classifier_on_slide_shards_beats_chance(tiled):
    """Logistic regression on texture features, trained on the train slides, scored on unseen val slides.

    Chance is 1/3; measured accuracy is recorded in the assertion message. Threshold: 0.6.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out, _ = tiled

    def xy(split):
        samples = list(_samples(out, split))
        return np.stack([_features(s["jpg"]) for s in samples]), np.array([int(s["cls"]) for s in samples])

    x_train, y_train = xy("train")
    x_val, y_val = xy("val")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    acc = float((clf.predict(x_val) == y_val).mean())
    print(f"slide-grouped val accuracy {acc:.3f} on {len(y_val)} tiles")
    assert acc > 0.6, f"val accuracy {acc:.3f} on {len(y_val)} tiles from unseen slides"


def test_two_workers_give_the_same_shards(tiled, slides, tmp_path):
    folder, _ = slides
    out, _ = tiled
    report = _tile(folder, tmp_path / "w2", "slides.workers=2")
    assert report.ok
    assert _digest(tmp_path / "w2") == _digest(out)


def test_random_sampling_min_distance_and_seed(slides, tmp_path):
    folder, _ = slides
    a = _tile(folder, tmp_path / "a", "slides.sampling.mode=random", "slides.sampling.min_distance=1.5",
              "slides.sampling.max_tiles_per_slide=6")
    _tile(folder, tmp_path / "b", "slides.sampling.mode=random", "slides.sampling.min_distance=1.5",
              "slides.sampling.max_tiles_per_slide=6")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    work = (tmp_path / "a.work") / "slides"
    for r in a.results:
        assert r["kept"] <= 6
        pts = [json.loads(l)["meta"] for l in (work / r["slide_id"] / "tiles.jsonl").read_text().splitlines()]
        xy = np.array([[m["x"], m["y"]] for m in pts], dtype=float)
        d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
        assert d.min() >= 1.5 * 256 - 1


def test_balanced_quotas_equalise_classes(slides, tmp_path):
    from mmlnb_dist.slides.sampling import balanced_quotas

    q = balanced_quotas({"a": 10, "b": 3, "c": 50}, {"a": "UD", "b": "UD", "c": "D"}, cap=None)
    assert q["a"] + q["b"] == q["c"] == 13
    folder, layouts = slides
    report = _tile(folder, tmp_path / "bal", "slides.sampling.balance_classes=true",
                   "slides.sampling.max_tiles_per_slide=5")
    per_class: dict = {}
    for r in report.results:
        per_class[r["label"]] = per_class.get(r["label"], 0) + r["kept"]
    assert set(per_class.values()) == {15}


def test_slide_without_resolution_needs_assume_mpp(tmp_path):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    write_synthetic_slide(tmp_path / "nompp.tif", "PD", width=1024, height=1024, pool_size=2,
                          downsamples=(1,), write_mpp=False)
    (tmp_path / "labels.csv").write_text("slide_id,label\nnompp,PD\n")
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = _cfg("data.build.val_fraction=0")
    report = tile_slides(cfg.slides, cfg.data.build, tmp_path, tmp_path / "labels.csv", tmp_path / "o1",
                         cfg.data.classes, progress=False)
    assert report.problems and "--assume-mpp" in report.results[0]["error"]
    cfg = _cfg("data.build.val_fraction=0", "slides.assume_mpp=0.5")
    report = tile_slides(cfg.slides, cfg.data.build, tmp_path, tmp_path / "labels.csv", tmp_path / "o2",
                         cfg.data.classes, progress=False)
    assert report.ok and report.results[0]["mpp_source"] == "assumed" and report.results[0]["kept"] > 0


def test_pen_and_low_contrast_filters():
    import cv2

    from mmlnb_dist.slides.config import TileQCConfig
    from mmlnb_dist.data.synthetic import render_patch
    from mmlnb_dist.slides.qc import check_tile

    tile = render_patch("PD", 256, np.random.default_rng(0))
    scores, reason = check_tile(tile, 20.0, "saturation", TileQCConfig())
    assert reason is None, scores
    inked = tile.copy()
    cv2.line(inked, (0, 128), (255, 140), (20, 140, 60), 40)  # a green marker stroke
    assert check_tile(inked, 20.0, "saturation", TileQCConfig())[1] == "pen"
    faint = (tile.astype(np.float32) * 0.15 + 200).astype(np.uint8)  # washed-out stain
    scores, reason = check_tile(faint, 5.0, "saturation", TileQCConfig(min_blur=0.0))
    assert reason == "low_contrast", scores


def test_coarse_tiles_come_from_a_coarse_level(slides, tmp_path):
    """2 um/px tiles on a 0.5 um/px slide with levels 1 and 4: read from level 1 (downsample 4), never level 0,
    and the provenance (level-0 x, y, size0) reads back the stored pixels."""
    from PIL import Image

    from mmlnb_dist.data.images import image_member
    from mmlnb_dist.slides.reader import SlideReader

    folder, _ = slides
    out = tmp_path / "coarse"
    report = _tile(folder, out, "slides.mpp=2.0", "slides.tile_size=64", "data.build.image_format=original",
                   "data.build.val_fraction=0")
    assert report.ok
    for r in report.results:
        assert r["level"] == 1 and r["size0"] == 256
    sample = next(iter(_samples(out, "train")))
    meta = json.loads(sample["json"])
    with SlideReader(folder / f"{meta['slide_id']}.tif") as reader:
        again = reader.read_tile(meta["x"], meta["y"], meta["size0"], 64, meta["level"]).astype(np.float32)
    stored = np.asarray(Image.open(io.BytesIO(sample[image_member(sample)])).convert("RGB")).astype(np.float32)
    assert np.abs(stored - again).mean() < 6.0

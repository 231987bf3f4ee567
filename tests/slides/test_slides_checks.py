"""Slide tiling defects of issue 11: tissue masks that do not move (item 10), split warnings at tiling time
(item 9), and the one documented label-CSV column name (item 12)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmlnb_dist.config import load_config

MPP = 0.5           # level-0 microns per pixel of the rectangle slide
SIDE = 4096         # level-0 pixels (2048 um); the default 8 um thumbnail is level 1 (downsample 16)
RECT = (1024, 1536, 3072, 2816)  # tissue rectangle x0, y0, x1, y1 (level 0), on thumbnail-pixel boundaries


def write_rectangle_slide(path: Path, rect=RECT) -> None:
    """A two-level tiled TIFF: near-white glass with one H&E-pink rectangle of tissue whose edges are known."""
    import tifffile

    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = rect
    img = np.empty((SIDE, SIDE, 3), np.uint8)
    img[:] = (242, 241, 239)
    tissue = np.array([196, 110, 170], np.int16) + rng.integers(-12, 13, (y1 - y0, x1 - x0, 1), dtype=np.int16)
    img[y0:y1, x0:x1] = np.clip(tissue, 0, 255).astype(np.uint8)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for i, ds in enumerate((1, 16)):
            level = img[::ds, ::ds] if ds == 1 else img.reshape(SIDE // ds, ds, SIDE // ds, ds, 3).mean((1, 3))
            tw.write(level.astype(np.uint8), tile=(256, 256), photometric="rgb", compression="zlib",
                     subfiletype=0 if i == 0 else 1, metadata=None,
                     resolution=(1e4 / (MPP * ds), 1e4 / (MPP * ds)), resolutionunit="CENTIMETER")


@pytest.fixture(scope="module")
def rectangle_slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rect_wsi") / "rect.tif"
    write_rectangle_slide(path)
    return path


@pytest.mark.parametrize("overrides", [[], ["slides.tissue.closing_um=48", "slides.tissue.opening_um=24"],
                                       ["slides.tissue.thumbnail_mpp=4"]])
def test_tissue_mask_geojson_sits_on_the_true_rectangle(rectangle_slide, overrides):
    """Every side of the written GeoJSON polygon is within one thumbnail pixel of the tissue's true edge
    (even-sized morphology kernels used to shift the mask 2 thumbnail pixels down and right)."""
    from mmlnb_dist.slides.geojson import to_geojson
    from mmlnb_dist.slides.reader import SlideReader
    from mmlnb_dist.slides.slide_task import slide_mask

    cfg = load_config(None, overrides).slides
    with SlideReader(rectangle_slide) as reader:
        _, mask = slide_mask(reader, cfg)
    features = to_geojson(mask.polygons, "rect")["features"]
    assert len(features) == 1
    ring = np.asarray(features[0]["geometry"]["coordinates"][0])
    got = (ring[:, 0].min(), ring[:, 1].min(), ring[:, 0].max(), ring[:, 1].max())
    thumb_px = mask.scale  # level-0 pixels per thumbnail pixel
    for side, value, truth in zip(("left", "top", "right", "bottom"), got, RECT):
        assert abs(value - truth) <= thumb_px, f"{side} edge at {value}, tissue edge at {truth} (+-{thumb_px})"


# -- item 9: a split that cannot serve its purpose is named at tiling time --------------------------------------
@pytest.fixture(scope="module")
def two_slides(tmp_path_factory) -> Path:
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("two_wsi")
    for k, label in enumerate(("UD", "D")):
        write_synthetic_slide(folder / f"{label}-0.tif", label, width=1024, height=1024, seed=k, pool_size=2,
                              downsamples=(1, 4), blur=False)
    (folder / "labels.csv").write_text("slide_id,label\nUD-0,UD\nD-0,D\n")
    return folder


def test_tiling_two_slides_warns_that_val_is_empty_and_names_the_remedy(two_slides, tmp_path, caplog):
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, ["slides.sampling.max_tiles_per_slide=4", "data.build.image_size=32",
                             "slides.qc_pictures=false"])
    with caplog.at_level("WARNING"):
        report = tile_slides(cfg.slides, cfg.data.build, two_slides, two_slides / "labels.csv", tmp_path / "out",
                             cfg.data.classes, progress=False)
    assert report.manifest["splits"]["val"]["num_samples"] == 0
    text = caplog.text
    assert "val split is empty" in text and "2 slide(s)" in text
    assert "data.build.stratify=false" in text and "data.build.group_by_slide=false" in text


# -- item 12: the label CSV's slide column is `slide_id` (docs/slides.md), nothing else --------------------------
@pytest.mark.parametrize("header", ["slide,label", "Slide_ID,label", "slide_name,label"])
def test_label_csv_without_slide_id_column_names_the_columns_found(tmp_path, header):
    from mmlnb_dist.slides.inputs import TilingInputError, read_labels

    path = tmp_path / "labels.csv"
    path.write_text(f"{header}\nUD-0,UD\n")
    with pytest.raises(TilingInputError, match="slide_id") as err:
        read_labels(path)
    assert f"'{header.split(',')[0]}'" in str(err.value)  # the column the user wrote is named


def test_label_csv_with_slide_id_is_read(tmp_path):
    from mmlnb_dist.slides.inputs import read_labels

    path = tmp_path / "labels.csv"
    path.write_text("slide_id,label,notes\nUD-0, UD ,x\nD-1,D,\n")
    assert read_labels(path) == {"UD-0": "UD", "D-1": "D"}


def test_a_slide_labelled_twice_differently_is_refused_naming_both_rows(tmp_path):
    """Its tiles used to take the last row's label, silently (a copy-paste slip relabels a whole slide)."""
    from mmlnb_dist.slides.inputs import TilingInputError, read_labels

    path = tmp_path / "labels.csv"
    path.write_text("slide_id,label\nUD-0,UD\nD-1,D\nUD-0,PD\nD-1,D\n")  # D-1 twice alike: fine
    with pytest.raises(TilingInputError) as err:
        read_labels(path)
    assert "UD-0" in str(err.value) and "rows 2 and 4" in str(err.value) and "'UD'" in str(err.value), err.value
    path.write_text("slide_id,label\nUD-0,UD\nD-1,D\nD-1,D\n")
    assert read_labels(path) == {"UD-0": "UD", "D-1": "D"}


def test_slide_list_csv_with_a_slide_column_is_rejected_not_ignored(tmp_path):
    """A `slide` column in the --slides CSV used to be ignored silently (ids fell back to file stems, so no
    label matched); the documented column is `slide_id`."""
    from mmlnb_dist.slides.inputs import TilingInputError, find_slides

    (tmp_path / "a.tif").write_bytes(b"")
    listing = tmp_path / "slides.csv"
    listing.write_text("path,slide\na.tif,case-1\n")
    with pytest.raises(TilingInputError, match="'slide'.*slide_id"):
        find_slides(listing)
    listing.write_text("path,slide_id\na.tif,case-1\n")
    assert find_slides(listing) == {"case-1": tmp_path / "a.tif"}

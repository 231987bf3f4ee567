"""Mutation-audit tests for where tiles come from: the grid's level-0 coordinates and its last row and column,
the minimum mask share, seeded sampling (same seed and slide: same tiles), balanced quotas, the pyramid level
and tile resolution, the slide identity a resume trusts, and slide ids from a folder or a CSV."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.config import SamplingConfig
from mmlnb_dist.slides.inputs import TilingInputError, find_slides, match_inputs, read_labels, safe_key
from mmlnb_dist.slides.reader import Resolution, SlideReader
from mmlnb_dist.slides.sampling import balanced_quotas, candidates, mask_fractions, poisson_candidates, slide_rng


def _grid(raster, scale, dims, size0, **cfg):
    cands = candidates(raster, scale, dims, size0, SamplingConfig(mode="grid", **cfg), "s1")
    return sorted((x, y) for x, y, _ in cands), cands


# ---------------------------------------------------------------------------------------------------------------
# Grid coordinates and the mask share
# ---------------------------------------------------------------------------------------------------------------
def test_grid_covers_the_slide_to_its_last_whole_tile():
    """A 1000 x 600 slide in 100-px tiles: corners 0..900 by 0..500, the last column and row included."""
    full = np.ones((60, 100), bool)
    xy, _ = _grid(full, 10.0, (1000, 600), 100)
    assert xy == sorted((x, y) for x in range(0, 901, 100) for y in range(0, 501, 100))


def test_grid_overlap_sets_the_stride():
    """overlap 0.5: the stride is half a tile; 0.25 of 64 -> 48."""
    full = np.ones((30, 30), bool)
    xy, _ = _grid(full, 10.0, (300, 300), 100, overlap=0.5)
    assert sorted({x for x, _ in xy}) == [0, 50, 100, 150, 200]
    xy, _ = _grid(full, 1.0, (300, 300), 64, overlap=0.25)
    assert sorted({x for x, _ in xy}) == list(range(0, 300 - 64 + 1, 48))


def test_a_tile_with_exactly_the_minimum_mask_share_is_a_candidate():
    """`min_mask_fraction` is inclusive: a tile half on the tissue is kept at 0.5, dropped at 0.51."""
    raster = np.zeros((10, 20), bool)
    raster[:, 5:15] = True  # tissue from x=50 to x=150 (level 0, scale 10)
    xy, cands = _grid(raster, 10.0, (200, 100), 100, min_mask_fraction=0.5)
    assert xy == [(0, 0), (100, 0)] and all(f == 0.5 for _, _, f in cands)
    assert _grid(raster, 10.0, (200, 100), 100, min_mask_fraction=0.51)[0] == []


def test_mask_fractions_match_a_brute_force_reference():
    """Tiles not aligned with mask pixels cover every mask pixel they touch (ceil at the far edge)."""
    rng = np.random.default_rng(3)
    raster = rng.random((20, 30)) > 0.5
    scale, size0 = 8.0, 20
    xs, ys = rng.integers(0, 30 * 8 - size0, 50), rng.integers(0, 20 * 8 - size0, 50)
    got = mask_fractions(raster, scale, xs, ys, size0)
    for x, y, g in zip(xs, ys, got):
        x0, y0 = int(np.floor(x / scale)), int(np.floor(y / scale))
        x1, y1 = int(np.ceil((x + size0) / scale)), int(np.ceil((y + size0) / scale))
        assert g == pytest.approx(raster[y0:y1, x0:x1].mean())


# ---------------------------------------------------------------------------------------------------------------
# Seeded order and random sampling
# ---------------------------------------------------------------------------------------------------------------
def test_the_same_seed_and_slide_give_the_same_tiles_and_other_slides_another_order():
    """Visiting order and random positions depend on the seed and the slide id only."""
    raster = np.ones((40, 40), bool)
    for mode in ("grid", "random"):
        cfg = SamplingConfig(mode=mode, seed=7)
        a = candidates(raster, 10.0, (400, 400), 40, cfg, "slide-a")
        assert a == candidates(raster, 10.0, (400, 400), 40, cfg, "slide-a")
        assert a != candidates(raster, 10.0, (400, 400), 40, cfg, "slide-b")
        assert a != candidates(raster, 10.0, (400, 400), 40, cfg.model_copy(update={"seed": 8}), "slide-a")


def test_random_sampling_respects_the_limit_the_distance_and_the_mask_share():
    """Poisson-disk tiles stay `min_distance` tiles apart, on the tissue, and `limit` stops the draw early."""
    raster = np.zeros((40, 40), bool)
    raster[:, :20] = True  # the left half is tissue
    cfg = SamplingConfig(mode="random", min_distance=1.0, min_mask_fraction=0.9)
    all_ = poisson_candidates(raster, 10.0, (400, 400), 40, cfg, slide_rng(0, "s"), None)
    assert len(all_) > 10
    assert all(f >= 0.9 and x + 40 <= 200 + 4 for x, _, f in all_)
    pts = np.array([(x, y) for x, y, _ in all_], float)
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)) + np.eye(len(pts)) * 1e9
    assert d.min() >= 40
    assert poisson_candidates(raster, 10.0, (400, 400), 40, cfg, slide_rng(0, "s"), 5) == all_[:5]


def test_balanced_quotas_give_every_class_the_smallest_class_budget():
    """UD has 3 + 100 candidates, PD 50: each class gets 50; UD's small slide hands its unused share on."""
    counts = {"u1": 3, "u2": 100, "p1": 50}
    labels = {"u1": "UD", "u2": "UD", "p1": "PD"}
    assert balanced_quotas(counts, labels, None) == {"u1": 3, "u2": 47, "p1": 50}
    assert balanced_quotas(counts, labels, 20) == {"u1": 3, "u2": 17, "p1": 20}


# ---------------------------------------------------------------------------------------------------------------
# Resolution and pyramid level
# ---------------------------------------------------------------------------------------------------------------
def _reader(mpp=0.25, power=None, downsamples=(1.0, 4.0, 16.0)) -> SlideReader:
    reader = SlideReader.__new__(SlideReader)  # no file: the level and resolution arithmetic only
    reader.mpp, reader.objective_power, reader.level_downsamples = mpp, power, downsamples
    return reader


def test_best_level_is_the_coarsest_level_still_fine_enough():
    """Exact and rounding-off downsamples (4.000001 for 4) pick their level; 1% coarser is tolerated."""
    r = _reader(downsamples=(1.0, 4.000001, 16.0))
    assert [r.best_level(d) for d in (1.0, 3.9, 4.0, 15.0, 15.9, 16.0, 64.0)] == [0, 0, 1, 1, 2, 2, 2]


def test_target_mpp_from_magnification_uses_the_objective_power():
    """A 40x scan at 0.25 um/px asked for 10x: 1.0 um/px; without objective power, 10 / magnification."""
    assert _reader(0.25, 40.0).target_mpp(Resolution(mpp=None, magnification=10)) == pytest.approx(1.0)
    assert _reader(0.25, None).target_mpp(Resolution(mpp=None, magnification=20)) == pytest.approx(0.5)
    assert _reader(0.25, 40.0).target_mpp(Resolution(mpp=0.7)) == 0.7


def test_upsampling_is_warned_only_when_finer_than_the_scan():
    """Within 1% of the scan (metadata rounding) there is no warning; finer tiles are warned about."""
    from mmlnb_dist.slides.slide_task import upsampling_note

    assert upsampling_note(0.5, 0.5) is None and upsampling_note(0.5, 0.496) is None
    assert "upsampled" in upsampling_note(0.5, 0.45) and "upsampled" in upsampling_note(0.5, 0.25)


# ---------------------------------------------------------------------------------------------------------------
# Slide identity (what a resume trusts)
# ---------------------------------------------------------------------------------------------------------------
def test_slide_identity_sees_a_change_in_the_last_mib_and_a_new_mtime(tmp_path):
    """A resume re-tiles a slide whose last MiB changed (same size and times), or that was touched."""
    from mmlnb_dist.slides.identity import EDGE_BYTES, slide_identity

    path = tmp_path / "s.tif"
    data = bytearray(os.urandom(3 * EDGE_BYTES))
    path.write_bytes(data)
    before, st = slide_identity(path), path.stat()
    data[-10] ^= 0xFF  # a byte of the last MiB (where the small pyramid levels are), same size and times
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert slide_identity(path) != before
    data[-10] ^= 0xFF
    path.write_bytes(data)  # the original bytes back
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert slide_identity(path) != before  # touched: not trusted


# ---------------------------------------------------------------------------------------------------------------
# Slide ids and labels
# ---------------------------------------------------------------------------------------------------------------
def test_slide_ids_from_a_csv_are_trimmed_and_one_file_listed_twice_is_one_slide(tmp_path):
    """A CSV's slide_id is trimmed (empty: the file stem); the same file under the same id twice is one slide."""
    (tmp_path / "a.svs").write_bytes(b"x")
    (tmp_path / "b.svs").write_bytes(b"x")
    listing = tmp_path / "slides.csv"
    listing.write_text("path,slide_id\na.svs, A1 \n./a.svs,A1\nb.svs,\n")
    found = find_slides(listing)
    assert list(found) == ["A1", "b"] and found["A1"].name == "a.svs"


def test_slide_ids_with_one_file_key_are_refused_and_keys_keep_no_dots(tmp_path):
    """File keys keep only [A-Za-z0-9_-]; two slides making one key are refused before tiling."""
    assert safe_key("TCGA-01.A b") == "TCGA-01-A-b"
    (tmp_path / "x.y.svs").write_bytes(b"x")
    (tmp_path / "x-y.svs").write_bytes(b"x")
    with pytest.raises(TilingInputError, match="same file key"):
        find_slides(tmp_path)


def test_labels_are_trimmed_and_may_name_the_file(tmp_path):
    """Labels are trimmed, a row may name the slide file (`a.svs`), and a label not a class is a problem."""
    labels = tmp_path / "labels.csv"
    labels.write_text("slide_id,label\na.svs, UD \nb,PD\nc,XX\n")
    read = read_labels(labels)
    assert read == {"a.svs": "UD", "b": "PD", "c": "XX"}
    found = {k: tmp_path / f"{k}.svs" for k in ("a", "b", "c")}
    for p in found.values():
        p.write_bytes(b"x")
    usable, problems = match_inputs(found, read, ["UD", "PD"])
    assert {k: v[1] for k, v in usable.items()} == {"a": "UD", "b": "PD"}
    assert [(p["slide_id"], p["status"]) for p in problems] == [("c", "bad_label")]


def test_found_slide_paths_keep_their_link_names(tmp_path):
    """A link named by slide id keeps that id (the scanner's file name is not used)."""
    real = tmp_path / "scanner_0001.svs"
    real.write_bytes(b"x")
    folder = tmp_path / "wsi"
    folder.mkdir()
    (folder / "S1.svs").symlink_to(real)
    assert find_slides(folder) == {"S1": Path(os.path.abspath(folder / "S1.svs"))}


# ---------------------------------------------------------------------------------------------------------------
# One slide end to end: tile size at level 0, pyramid level, cap
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slide03(tmp_path_factory):
    """A 1024-px synthetic slide scanned at 0.3 um/px with a 4x level."""
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    path = tmp_path_factory.mktemp("slide03") / "S.tif"
    write_synthetic_slide(path, "UD", width=1024, height=1024, mpp=0.3, pool_size=2, downsamples=(1, 4), blur=False)
    return path


def _process(slide: Path, tmp_path: Path, box, *overrides: str):
    import json

    from mmlnb_dist.slides.slide_task import SlideJob, process_slide

    x0, y0, x1, y1 = box
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    (tmp_path / "m.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    cfg = load_config(None, ["slides.mpp=1.25", "slides.tile_size=64", "slides.qc_pictures=false",
                             "slides.qc.min_tissue_fraction=0", "slides.qc.min_blur=0", "slides.qc.min_contrast=0",
                             "slides.qc.max_pen_fraction=1", *overrides])
    return process_slide(SlideJob("S", slide, "UD", cfg.slides, tmp_path / "work", "fp",
                                  mask_path=tmp_path / "m.geojson"))


def test_a_slide_is_tiled_at_the_rounded_level0_size_from_the_coarsest_fine_enough_level(slide03, tmp_path):
    """0.3 um/px scan, 64-px tiles at 1.25 um/px: 266.67 level-0 pixels round to 267 (a 3 x 3 grid at 0, 267,
    534), read from the 4x level (4.17x asked); the cap of 4 keeps exactly 4 tiles, each recorded so."""
    import json

    from mmlnb_dist.slides.slide_task import TILES

    result = _process(slide03, tmp_path, (0, 0, 1024, 1024), "slides.sampling.max_tiles_per_slide=4")
    assert (result["status"], result["size0"], result["level"], result["mpp"]) == ("ok", 267, 1, 1.25)
    assert (result["candidates"], result["kept"]) == (9, 4)
    metas = [json.loads(line)["meta"] for line in open(tmp_path / "work" / "slides" / "S" / TILES)]
    assert len(metas) == 4 and all(m["x"] in (0, 267, 534) and m["y"] in (0, 267, 534) for m in metas)
    assert all((m["level"], m["size0"], m["tile_size"]) == (1, 267, 64) for m in metas)


def test_tissue_too_small_for_any_tile_is_no_tissue_not_a_qc_failure(slide03, tmp_path):
    """A mask region smaller than half a tile gives no candidate: the slide is `no_tissue`, saying no tile fits
    (not `no_tiles` blaming QC for 0 of 0 tiles)."""
    result = _process(slide03, tmp_path, (10, 10, 110, 110))
    assert (result["status"], result["candidates"], result["kept"]) == ("no_tissue", 0, 0)
    assert result["error"] == "no tile fits inside the tissue"


def test_a_class_with_no_candidate_is_left_out_of_the_balance():
    """D's one slide unreadable (0 candidates) set every class's budget to 0: no slide of any class kept a tile."""
    counts = {"u1": 10, "p1": 4, "p2": 3, "d1": 0}
    labels = {"u1": "UD", "p1": "PD", "p2": "PD", "d1": "D"}
    assert balanced_quotas(counts, labels, None) == {"u1": 7, "p1": 4, "p2": 3, "d1": 0}


def test_a_slide_left_a_quota_of_zero_is_told_why():
    """PD's one candidate is every class's budget: one of UD's two slides gets 0, and its note says why."""
    from mmlnb_dist.slides.sampling import zero_quota_notes

    counts, labels = {"u1": 5, "u2": 5, "p1": 1}, {"u1": "UD", "u2": "UD", "p1": "PD"}
    quotas = balanced_quotas(counts, labels, None)
    assert quotas == {"u1": 0, "u2": 1, "p1": 1}
    notes = zero_quota_notes(counts, quotas)
    assert list(notes) == ["u1"] and "balance_classes" in notes["u1"] and "number of slides" in notes["u1"]

"""A slide or a run that keeps no tile is a problem, never a silent success: a rerun that keeps none used to leave
the previous run's shard set in `--out` (which `train` would read) and exit 0, and a slide whose every tile failed
QC (or got a balanced quota of 0) was reported `ok` with 0 tiles."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmlnb_dist.cli import main

SMALL = ["--quiet", "--max-tiles", "2", "data.build.image_size=32", "slides.qc_pictures=false",
         "data.build.val_fraction=0"]


@pytest.fixture(scope="module")
def wsi(tmp_path_factory):
    """`two/`: UD-0 and PD-0 with tissue; `three/`: those and D-0, glass only (1024-pixel slides)."""
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    root = tmp_path_factory.mktemp("wsi")
    two, three = root / "two", root / "three"
    three.mkdir()
    for k, label in enumerate(("UD", "PD", "D")):
        write_synthetic_slide((three if label == "D" else two) / f"{label}-0.tif", label, width=1024, height=1024,
                              pool_size=3, downsamples=(1, 4), seed=k, tissue=label != "D")
    for name in ("UD-0.tif", "PD-0.tif"):
        (three / name).symlink_to(two / name)
    (two / "labels.csv").write_text("slide_id,label\nUD-0,UD\nPD-0,PD\n")
    (three / "labels.csv").write_text("slide_id,label\nUD-0,UD\nPD-0,PD\nD-0,D\n")
    return root


def _tile(wsi: Path, folder: str, out: Path, *extra: str) -> int:
    args = ["slides", "tile", "--slides", str(wsi / folder), "--labels", str(wsi / folder / "labels.csv"),
            "--out", str(out), *SMALL]
    return main(args + list(extra))


def test_a_rerun_that_keeps_no_tile_removes_the_old_shards_and_fails(wsi, tmp_path, capsys):
    out = tmp_path / "shards"
    assert _tile(wsi, "two", out, "slides.sampling.balance_classes=false") == 0
    assert (out / "manifest.json").is_file() and list(out.glob("train-*.tar"))
    capsys.readouterr()
    code = _tile(wsi, "two", out, "slides.qc.min_blur=100000")
    err = capsys.readouterr().err
    assert code == 1
    # The old shards (cut with other QC settings) are gone: nothing downstream can read them as this run's.
    assert not (out / "manifest.json").exists() and not list(out.glob("*.tar"))
    assert "no tile was kept from any slide" in err and str(out) in err, err
    assert "UD-0 (no_tiles)" in err and "PD-0 (no_tiles)" in err, err


def test_a_slide_whose_every_tile_fails_qc_is_a_problem_naming_the_reasons(wsi, tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, ["slides.qc.min_blur=100000", "slides.sampling.max_tiles_per_slide=2",
                             "slides.qc_pictures=false"])
    report = tile_slides(cfg.slides, cfg.data.build, wsi / "two", wsi / "two" / "labels.csv", tmp_path / "o",
                         cfg.data.classes, progress=False)
    assert report.manifest is None and not report.ok
    ud = next(r for r in report.results if r["slide_id"] == "UD-0")
    assert ud["status"] == "no_tiles" and ud["kept"] == 0
    assert "failed QC" in ud["error"] and "blur" in ud["error"], ud["error"]
    assert ud in report.problems


def test_a_class_with_no_tissue_is_left_out_of_the_balance_and_named(wsi, tmp_path, caplog, capsys):
    """D-0 (the only D slide) is glass only: it set every class's budget to 0, so UD-0 and PD-0 kept no tile.
    The classes that can be balanced now are (same count each), and the missing one is named."""
    out = tmp_path / "balanced"
    code = _tile(wsi, "three", out, "slides.sampling.balance_classes=true")
    assert code == 1  # D-0 is still a problem (no_tissue)
    kept = {}
    for sid in ("UD-0", "PD-0", "D-0"):
        result = json.loads((tmp_path / "balanced.work" / "slides" / sid / "result.json").read_text())
        kept[sid] = (result["status"], result.get("kept", 0))
    assert kept["D-0"] == ("no_tissue", 0), kept
    assert kept["UD-0"][0] == kept["PD-0"][0] == "ok" and kept["UD-0"][1] == kept["PD-0"][1] > 0, kept
    said = caplog.text + capsys.readouterr().err  # the CLI's log handler or pytest's, whichever got it
    assert "balance_classes: class 'D'" in said and "left out" in said, said


def test_a_folder_that_is_not_a_shard_set_is_left_alone(wsi, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    # refused before any slide is tiled (exit 2), as a run that keeps tiles would be refused at the shards
    assert _tile(wsi, "two", out, "slides.qc.min_blur=100000") == 2
    assert (out / "notes.txt").read_text() == "keep me"


def test_the_old_shard_set_survives_a_run_that_keeps_tiles(wsi, tmp_path):
    """The clean-up is for a run that writes nothing: a run that writes shards replaces them as before."""
    out = tmp_path / "shards"
    assert _tile(wsi, "two", out) == 0
    first = json.loads((out / "manifest.json").read_text())
    shutil.rmtree(tmp_path / "shards.work")
    assert _tile(wsi, "two", out, "--max-tiles", "1") == 0
    second = json.loads((out / "manifest.json").read_text())
    assert sum(s["num_samples"] for s in second["splits"].values()) == 2
    assert sum(s["num_samples"] for s in first["splits"].values()) == 4

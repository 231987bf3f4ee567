"""`slides tile --out` a folder of the user's own files (not a shard set: the slide folder itself, say) is refused
before any slide is tiled: it used to tile every slide into `<out>.work/` (hours on a real cohort) and only then
refuse, when the shards were written. An empty folder and the run's own earlier shard set are written as before."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.cli import main

SIDE = 1024
FAST = ["--quiet", "--max-tiles", "2", "data.build.image_size=32", "slides.qc_pictures=false",
        "data.build.val_fraction=0"]


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("wsi")
    for k, label in enumerate(("UD", "PD")):
        write_synthetic_slide(folder / f"{label}-0.tif", label, width=SIDE, height=SIDE, pool_size=3,
                              downsamples=(1, 4), seed=k)
    (folder / "labels.csv").write_text("slide_id,label\nUD-0,UD\nPD-0,PD\n")
    return folder


def _tile(slides, out, *extra):
    return main(["slides", "tile", "--slides", str(slides), "--labels", str(slides / "labels.csv"), "--out",
                 str(out), *FAST, *extra])


def test_an_out_folder_of_other_files_is_refused_before_any_slide_is_tiled(slides, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert _tile(slides, out) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "not a shard set" in err, err
    assert not (tmp_path / "mine.work" / "slides").exists()  # nothing tiled
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_an_empty_out_folder_and_an_earlier_shard_set_are_still_written(slides, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert _tile(slides, out) == 0
    assert _tile(slides, out, "--tile-size", "128") == 0  # a rerun into its own shard set
    assert json.loads((out / "manifest.json").read_text())["provenance"]["slides"]["tile_size"] == 128

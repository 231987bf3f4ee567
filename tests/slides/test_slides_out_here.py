"""`slides tile --out .` (the shard set in the folder the user is in) tiles into it, staging beside it as
`<folder>.work`, as any other `--out`: it failed with a traceback (`PosixPath('.') has an empty name`) when the
staging folder's name was made from the output's, and the tracking log of a relative `--out` went to `.work`
inside the current folder instead of the staging folder the tiler used."""
from __future__ import annotations

import json

from mmlnb_dist.cli import main


def test_tiling_into_the_current_folder(tmp_path, monkeypatch):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    slides = tmp_path / "wsi"
    for k, label in enumerate(("UD", "PD")):
        write_synthetic_slide(slides / f"{label}-0.tif", label, width=1024, height=1024, pool_size=3,
                              downsamples=(1, 4), seed=k)
    (slides / "labels.csv").write_text("slide_id,label\nUD-0,UD\nPD-0,PD\n")
    here = tmp_path / "shards"
    here.mkdir()
    monkeypatch.chdir(here)
    code = main(["slides", "tile", "--slides", str(slides), "--labels", str(slides / "labels.csv"), "--out", ".",
                 "--quiet", "--max-tiles", "2", "data.build.image_size=32", "slides.qc_pictures=false",
                 "data.build.val_fraction=0", "slides.sampling.balance_classes=false"])
    assert code == 0
    manifest = json.loads((here / "manifest.json").read_text())
    assert manifest["splits"]["train"]["num_samples"] == 4
    assert (tmp_path / "shards.work").is_dir() and not (here / ".work").exists()

"""`slides tile --mpp X --magnification Y`: two tile resolutions are a usage error naming both flags; `--mpp` used
to be dropped silently (the magnification won), so the tiles were not at the resolution the user asked for."""
from __future__ import annotations

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


def test_mpp_and_magnification_together_are_a_usage_error(slides, tmp_path, capsys):
    assert _tile(slides, tmp_path / "both", "--mpp", "0.25", "--magnification", "20") == 2
    err = capsys.readouterr().err
    assert "--mpp" in err and "--magnification" in err, err
    assert not (tmp_path / "both.work").exists()

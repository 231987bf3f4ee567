"""`--assume-mpp` is held to the bound slide metadata is held to (at most 20 um/px): `--assume-mpp 40` (a 40x scan
meant) tiled each 3-pixel square of the slide blown up to a 256-pixel tile, `ok` with exit 0, and on a real slide
size meant hundreds of millions of candidate positions. It is now a config error naming the likely mix-up."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


def test_an_assumed_mpp_coarser_than_any_scan_is_refused():
    with pytest.raises(ConfigError, match=r"slides.assume_mpp.*40 um/px is not a scan's level-0 resolution.*"
                                          r"magnification"):
        load_config(None, ["slides.assume_mpp=40"])
    assert load_config(None, ["slides.assume_mpp=20"]).slides.assume_mpp == 20.0
    assert load_config(None, ["slides.assume_mpp=0.25"]).slides.assume_mpp == 0.25


def test_the_flag_is_a_usage_error_before_any_slide_is_tiled(tmp_path, capsys):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    slides = tmp_path / "wsi"
    write_synthetic_slide(slides / "S.tif", "UD", width=1024, height=1024, pool_size=3, downsamples=(1,),
                          write_mpp=False)
    (slides / "labels.csv").write_text("slide_id,label\nS,UD\n")
    code = main(["slides", "tile", "--slides", str(slides), "--labels", str(slides / "labels.csv"), "--out",
                 str(tmp_path / "out"), "--assume-mpp", "40", "--quiet"])
    assert code == 2 and "--assume-mpp" in capsys.readouterr().err
    assert not (tmp_path / "out.work").exists()

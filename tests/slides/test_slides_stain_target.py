"""A `--stain-target` that cannot serve as one is a usage error (exit 2) naming the file and what is wrong. An
all-white image used to end in `LinAlgError: Eigenvalues did not converge` (Macenko) or turn every tile white
(Reinhard), and a file that is not an image in `UnidentifiedImageError`: tracebacks with exit code 1, the code
that means "some slides had problems"."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.slides.stain import StainNormalizer, default_target_path, load_rgb


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("stain_target")
    write_synthetic_slide(folder / "s-0.tif", "UD", width=512, height=512, pool_size=2, downsamples=(1, 4), seed=0)
    (folder / "labels.csv").write_text("slide_id,label\ns-0,UD\n")
    return folder


def _png(path: Path, rgb: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(rgb).save(path)
    return path


def _white(path: Path, stained: int = 0) -> Path:
    rgb = np.full((128, 128, 3), 250, np.uint8)
    rgb.reshape(-1, 3)[:stained] = (150, 80, 160)  # a few H&E-coloured pixels: not enough to fit on
    return _png(path, rgb)


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
@pytest.mark.parametrize("kind", ["white", "few_stained", "not_an_image"])
def test_an_unusable_stain_target_exits_2_naming_it(slide, tmp_path, capsys, method, kind):
    if kind == "not_an_image":
        target = tmp_path / "target.png"
        target.write_text("these are notes, not an image\n")
        words = ["not an image"]
    else:
        target = _white(tmp_path / "target.png", stained=0 if kind == "white" else 50)
        words = ["too little stained tissue"]
    code = main(["slides", "tile", "--slides", str(slide), "--labels", str(slide / "labels.csv"), "--out",
                 str(tmp_path / "out"), "--quiet", "--stain", method, "--stain-target", str(target)])
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert str(target) in last and "Traceback" not in err, err
    for word in words:
        assert word in last, last


def test_a_target_array_without_stain_is_refused_by_the_normalizer():
    # the fallback target (a region of the first slide) reaches StainNormalizer without a file
    white = np.full((64, 64, 3), 250, np.uint8)
    for method in ("macenko", "reinhard"):
        with pytest.raises(UserError, match="too little stained tissue"):
            StainNormalizer(method, white)


def test_a_real_target_still_fits():
    path = default_target_path()
    if path is None:
        pytest.skip("tiatoolbox's target_image.png is not installed")
    target = load_rgb(path)
    norm = StainNormalizer("macenko", target)
    out, used = norm(target[:256, :256])
    assert used == "macenko" and out.shape == (256, 256, 3)


def test_a_target_file_is_checked_once(tmp_path, monkeypatch):
    """load_rgb checks a target file for stained tissue; the normaliser fitted on it checked it again."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.slides import stain
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide
    from mmlnb_dist.slides.tiler import _target_from_slide, tile_slides

    slide = tmp_path / "wsi"
    slide.mkdir()
    write_synthetic_slide(slide / "s-0.tif", "UD", width=1024, height=1024, pool_size=3, downsamples=(1, 4), seed=1)
    (slide / "labels.csv").write_text("slide_id,label\ns-0,UD\n")
    cfg = load_config(None, ["slides.stain.method=macenko", "slides.qc_pictures=false", "data.build.image_size=32",
                             "slides.sampling.max_tiles_per_slide=1", "data.build.val_fraction=0"])
    region = _target_from_slide(cfg.slides, "s-0", slide / "s-0.tif", side=256)
    assert region is not None
    cfg.slides.stain.target = _png(tmp_path / "target.png", region)
    calls = []
    real = stain.check_stained
    monkeypatch.setattr(stain, "check_stained", lambda rgb, where: calls.append(where) or real(rgb, where))
    report = tile_slides(cfg.slides, cfg.data.build, slide, slide / "labels.csv", tmp_path / "out",
                         cfg.data.classes, progress=False)
    assert report.results[0]["status"] == "ok", report.results
    assert len(calls) == 1 and str(tmp_path / "target.png") in calls[0], calls

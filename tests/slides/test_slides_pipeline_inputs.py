"""`pipeline --slides` redoes the tile stage when anything it reads changes. Its fingerprint held the `--slides`
path itself (for a CSV, only the CSV file) and `cfg.slides` (only the mask folder's and stain target's paths), so
a slide a CSV lists replaced in place, an edited mask in `slides.mask_dir` or a new stain-target image reused the
stale tiles."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmlnb_dist.config import load_config


@pytest.fixture
def inputs(tmp_path):
    """A slide list CSV naming slides in another folder (one a MIRAX with its data folder), labels, masks and a
    stain target. Only file identities matter here: nothing is tiled."""
    store = tmp_path / "store"
    (store / "m1").mkdir(parents=True)
    (store / "a1.svs").write_bytes(b"slide a1" * 1000)
    (store / "m1.mrxs").write_bytes(b"mirax index")
    (store / "m1" / "Data0000.dat").write_bytes(b"pixels" * 1000)
    work = tmp_path / "project"
    (work / "masks").mkdir(parents=True)
    (work / "slides.csv").write_text(f"path,slide_id\n{store / 'a1.svs'},a1\n{store / 'm1.mrxs'},m1\n")
    (work / "labels.csv").write_text("slide_id,label\na1,UD\nm1,PD\n")
    (work / "masks" / "a1.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (work / "target.png").write_bytes(b"png bytes")
    return store, work


def _fp(work: Path) -> str:
    from mmlnb_dist.pipeline.steps import plan_tile

    cfg = load_config(None, [f"data.shards={work / 'shards'}", f"slides.mask_dir={work / 'masks'}",
                             "slides.stain.method=macenko", f"slides.stain.target={work / 'target.png'}"])
    return plan_tile(cfg, work / "slides.csv", work / "labels.csv").fingerprint


def _rewrite(path: Path, data: bytes) -> None:
    """New content, old size and modification time: only a look inside the file notices."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_slide_listed_in_the_csv_replaced_in_place_redoes_tiling(inputs):
    store, work = inputs
    before = _fp(work)
    assert _fp(work) == before  # nothing changed: the stage is skipped
    _rewrite(store / "a1.svs", b"slide A1" * 1000)
    assert _fp(work) != before


def test_a_changed_mirax_data_file_redoes_tiling(inputs):
    store, work = inputs
    before = _fp(work)
    (store / "m1" / "Data0000.dat").write_bytes(b"rescanned" * 1000)
    assert _fp(work) != before


def test_an_edited_mask_redoes_tiling(inputs):
    _, work = inputs
    before = _fp(work)
    (work / "masks" / "a1.geojson").write_text('{"type": "FeatureCollection", "features": [{}]}')
    assert _fp(work) != before


def test_a_new_stain_target_image_redoes_tiling(inputs):
    _, work = inputs
    before = _fp(work)
    _rewrite(work / "target.png", b"PNG bytes")
    assert _fp(work) != before

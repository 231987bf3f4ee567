"""The paths a SlideJob carries are absolute: a Ray task on an existing cluster (`--ray-address`) runs in the
cluster's working directory, where relative slide, staging and mask paths name nothing (or the wrong files)."""
from __future__ import annotations

from mmlnb_dist.config import load_config


def test_slide_jobs_hold_absolute_paths_when_given_relative_ones(tmp_path, monkeypatch):
    from mmlnb_dist.slides import tiler

    monkeypatch.chdir(tmp_path)
    (tmp_path / "wsi").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "wsi" / "S1.tif").write_bytes(b"not opened: the jobs are only looked at")
    (tmp_path / "wsi" / "labels.csv").write_text("slide_id,label\nS1,UD\n")
    (tmp_path / "masks" / "S1.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    seen = []
    monkeypatch.setattr(tiler, "_run_jobs", lambda jobs, *a, **k: seen.extend(jobs) or [])
    cfg = load_config(None, ["slides.mask_dir=masks", "slides.ray_address=auto"])
    tiler.tile_slides(cfg.slides, cfg.data.build, "wsi", "wsi/labels.csv", "out/shards", cfg.data.classes,
                      progress=False)
    (job,) = seen
    assert job.path.is_absolute() and job.path == tmp_path / "wsi" / "S1.tif"
    assert job.work_dir.is_absolute() and job.work_dir == tmp_path / "out" / "shards.work"
    assert job.mask_path.is_absolute() and job.mask_path == tmp_path / "masks" / "S1.geojson"

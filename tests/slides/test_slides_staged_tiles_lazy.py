"""The shard build after tiling reads each staged tile when it encodes it: `staged_samples` read every kept tile's
bytes of every slide into memory first (a cohort of 500 slides x 2000 tiles of 40 KB held 40 GB before the first
shard was written). Its samples now name the staged files; the shards hold the same samples, with the same
per-sample `source` (the slide), whatever folder the tiles were staged in."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from support.slides import tile, two_slides

from mmlnb_dist.slides.tiler import staged_samples, staging_folder


def _members(out: Path):
    found = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    found[m.name] = json.load(io.BytesIO(tar.extractfile(m).read()))
    return found


def test_staged_samples_hold_paths_not_bytes_and_the_shards_name_their_slide(tmp_path):
    slides = two_slides(tmp_path / "slides")
    out = tmp_path / "out"
    assert tile(slides, out) == 0
    work = staging_folder(out)
    results = [json.loads(p.read_text()) for p in sorted((work / "slides").glob("*/result.json"))]
    assert len(results) == 2, sorted(p.name for p in (work / "slides").rglob("*"))
    samples = staged_samples(work, results)
    assert len(samples) == 4
    assert all(isinstance(s.image, Path) and s.image.is_file() for s in samples)
    members = _members(out)
    assert len(members) == 4
    assert sorted(m["source"] for m in members.values()) == ["slides:PD-0.tif"] * 2 + ["slides:UD-0.tif"] * 2

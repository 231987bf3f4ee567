"""The shard build after tiling reads each staged tile when it encodes it: `staged_samples` read every kept tile's
bytes of every slide into memory first (a cohort of 500 slides x 2000 tiles of 40 KB held 40 GB before the first
shard was written). Its samples now name the staged files; the shards hold the same samples, with the same
per-sample `source` (the slide), whatever folder the tiles were staged in."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
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


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    """Two slides tiled at the default 256 px, stored in the shards at 32 px (`FAST`), and the log of that run."""
    import logging

    tmp_path = tmp_path_factory.mktemp("lazy")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("mmlnb_dist").addHandler(handler)  # (the CLI's package logger does not propagate)
    try:
        assert tile(two_slides(tmp_path / "slides"), tmp_path / "out") == 0
    finally:
        logging.getLogger("mmlnb_dist").removeHandler(handler)
    return tmp_path / "out", [r.getMessage() for r in records]


def test_staged_samples_hold_paths_not_bytes_and_the_shards_name_their_slide(tiled):
    out, _ = tiled
    work = staging_folder(out)
    results = [json.loads(p.read_text()) for p in sorted((work / "slides").glob("*/result.json"))]
    assert len(results) == 2, sorted(p.name for p in (work / "slides").rglob("*"))
    samples = staged_samples(work, results)
    assert len(samples) == 4
    assert all(isinstance(s.image, Path) and s.image.is_file() for s in samples)
    members = _members(out)
    assert len(members) == 4
    assert sorted(m["source"] for m in members.values()) == ["slides:PD-0.tif"] * 2 + ["slides:UD-0.tif"] * 2


def test_the_shards_record_the_resolution_of_the_image_they_store(tiled):
    """256 px tiles at 0.5 um/px stored at data.build.image_size=32 are 4 um/px images: each sample's json said
    only `mpp` 0.5 and `tile_size` 256 (the tile as cut), and the run said nothing of the resize. Now the json gives
    the stored image's `image_size` and `image_mpp`, and a warning names both sizes and the remedy."""
    from PIL import Image

    out, messages = tiled
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            for name in (n for n in names if n.endswith(".json")):
                meta = json.load(tar.extractfile(name))
                image = Image.open(io.BytesIO(tar.extractfile(name[:-len("json")] + "jpg").read()))
                assert meta["tile_size"] == 256 and meta["mpp"] == 0.5
                assert meta["image_size"] == image.size[0] == 32
                # the stored pixels cover the tile's level-0 square: side x image_mpp = size0 x level0_mpp
                assert meta["image_mpp"] * image.size[0] == pytest.approx(meta["size0"] * meta["level0_mpp"])
    assert any("slides.tile_size=256" in m and "data.build.image_size=32" in m and "8x coarser" in m
               for m in messages), messages

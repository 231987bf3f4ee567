"""An empty image file (0 bytes: an interrupted copy or export) was skipped by `shards build` as "image not
decodable (UnidentifiedImageError: cannot identify image file)", which sends a user looking for a wrong format. The
skip reason now says the file is empty; the other images are built as before."""
from __future__ import annotations

from mmlnb_dist.data.build import build_shards
from mmlnb_dist.data.config import BuildConfig

from support.shards import CLASSES, specs_for, write_patch_folder


def test_an_empty_file_is_skipped_as_empty_not_as_an_unknown_format(tmp_path):
    src = write_patch_folder(tmp_path / "src", per_class=3, size=16)
    (src / "PD" / "PD_001.png").write_bytes(b"")
    build = BuildConfig(max_samples_per_shard=100, val_fraction=0.0, image_format="png", image_size=16,
                        max_skipped_rate=0.5)
    manifest = build_shards(specs_for(src), tmp_path / "shards", build, CLASSES, progress=False)
    assert [(s["source"], s["reason"]) for s in manifest["skipped"]] == [
        (str(src / "PD" / "PD_001.png"),
         "image not decodable (ValueError: the file is empty (0 bytes): an interrupted copy or export? copy it again)")]
    assert manifest["splits"]["train"]["num_samples"] == 8

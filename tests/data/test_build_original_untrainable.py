"""`shards build` with `image_format: original` stores the source bytes as they are, so its decodability check must
be the one training applies (`data.images.to_rgb`): a 32-bit float TIFF opened in PIL, passed the build, and failed
the first training step that met it (fine-tuning, after the run folder was made). It is now skipped and listed
like any unreadable image, as the re-encoding formats already did."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.build import SampleSpec, build_shards
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.shardset import ShardSet


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("image_format", ["original", "png"])
def test_an_image_training_cannot_decode_is_skipped_whatever_the_format(tmp_path, image_format):
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), 0.5, dtype=np.float32), mode="F").save(buf, format="TIFF")
    samples = [SampleSpec(f"ok{i}", "UD", _png(40 * i)) for i in range(4)]
    samples.append(SampleSpec("float0", "UD", buf.getvalue()))
    build = BuildConfig(max_samples_per_shard=8, val_fraction=0.0, test_fraction=0.0, image_format=image_format,
                        image_size=16, group_by_slide=False, max_skipped_rate=0.5, seed=0)
    build_shards(samples, tmp_path / "shards", build, ["UD", "PD", "D"], progress=False)
    manifest = ShardSet.open(tmp_path / "shards").manifest
    assert [s["key"] for s in manifest["skipped"]] == ["float0"]
    assert "0-255" in manifest["skipped"][0]["reason"]
    assert manifest["splits"]["train"]["num_samples"] == 4

"""Patches smaller than `data.build.image_size` are upscaled to it when shards are built (a 64 px patch becomes a
blurry 224 px sample). That was silent; the build now says so once, in one warning: how many, the smallest size
and the first few files. The build is not refused, and the samples are what they were."""
from __future__ import annotations

import numpy as np
from PIL import Image

from mmlnb_dist.data import build as B
from mmlnb_dist.data.config import BuildConfig

CLASSES = ["UD", "PD"]


def _patch(path, w, h, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _specs(tmp_path, sizes):
    return [B.SampleSpec(key=f"p{i}", label=CLASSES[i % 2], image=_patch(tmp_path / f"p{i}.png", w, h, i))
            for i, (w, h) in enumerate(sizes)]


def _upscaled(caplog):
    return [r for r in caplog.records if "upscaled" in r.getMessage()]


def test_small_patches_are_counted_once_with_the_smallest_size_and_files(tmp_path, caplog):
    # 32 px samples: p0 (16x16), p2 (40x20: short side 20) and p4 (24x24) are smaller; 32x32 and 64x48 are not
    # (max_samples_per_shard=2: several shards, one warning; the files named in name order)
    sizes = [(16, 16), (32, 32), (40, 20), (64, 48), (24, 24), (48, 64)]
    specs = _specs(tmp_path, sizes)
    build = BuildConfig(image_size=32, image_format="png", val_fraction=0.0, max_samples_per_shard=2)
    with caplog.at_level("WARNING"):
        manifest = B.build_shards(specs, tmp_path / "out", build, CLASSES, progress=False)
    assert sum(s["num_samples"] for s in manifest["splits"].values()) == len(sizes)  # none refused or dropped
    found = _upscaled(caplog)
    assert len(found) == 1, caplog.text  # once per build, not once per shard or image
    msg = found[0].getMessage()
    assert "3 of 6" in msg and "data.build.image_size=32" in msg and "16x16" in msg, msg
    assert msg.endswith(f"{tmp_path / 'p0.png'}, {tmp_path / 'p2.png'}, {tmp_path / 'p4.png'}"), msg
    assert "p1.png" not in msg and "p3.png" not in msg and "p5.png" not in msg, msg


def test_no_warning_when_every_patch_is_at_least_the_size_or_kept_original(tmp_path, caplog):
    specs = _specs(tmp_path, [(32, 32), (64, 40)])
    with caplog.at_level("WARNING"):
        B.build_shards(specs, tmp_path / "out", BuildConfig(image_size=32, val_fraction=0.0), CLASSES,
                       progress=False)
        small = _specs(tmp_path, [(16, 16), (8, 8)])
        B.build_shards(small, tmp_path / "orig", BuildConfig(image_size=32, image_format="original",
                                                             val_fraction=0.0), CLASSES, progress=False)
    assert not _upscaled(caplog), caplog.text  # an original is stored as it is: nothing is upscaled


def test_samples_given_as_bytes_are_named_by_key(tmp_path, caplog):
    """Slide tiles reach the build as bytes: the warning names their keys, not '<bytes>' four times."""
    specs = [B.SampleSpec(key=f"S1_{i}", label="UD", image=_patch(tmp_path / f"t{i}.png", 16, 16, i).read_bytes())
             for i in range(2)]
    with caplog.at_level("WARNING"):
        B.build_shards(specs, tmp_path / "out", BuildConfig(image_size=32, val_fraction=0.0), CLASSES,
                       progress=False)
    msg = _upscaled(caplog)[0].getMessage()
    assert "2 of 2" in msg and "S1_0, S1_1" in msg and "<bytes>" not in msg, msg


def test_a_resumed_build_counts_the_upscaled_images_of_the_shards_it_reused(tmp_path, caplog, monkeypatch):
    """A build stopped after its first shards and run again warned about the images it encoded this time only
    ("1 of 2": the reused shards' small images were not counted, nor named): the same numbers as an uninterrupted
    build now."""
    sizes = [(16, 16), (32, 32), (40, 20), (64, 48), (24, 24), (48, 64)]
    specs = _specs(tmp_path, sizes)
    build = BuildConfig(image_size=32, image_format="png", val_fraction=0.0, max_samples_per_shard=2)
    real, calls = B._encode, [0]

    def stop_in_the_third_shard(spec, config):
        calls[0] += 1
        if calls[0] > 4:
            raise KeyboardInterrupt
        return real(spec, config)

    monkeypatch.setattr(B, "_encode", stop_in_the_third_shard)
    try:
        B.build_shards(specs, tmp_path / "out", build, CLASSES, progress=False)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(B, "_encode", real)
    assert not (tmp_path / "out" / "manifest.json").exists()
    caplog.clear()
    with caplog.at_level("WARNING"):
        B.build_shards(specs, tmp_path / "out", build, CLASSES, progress=False)
    found = _upscaled(caplog)
    assert len(found) == 1, caplog.text
    msg = found[0].getMessage()
    assert "3 of 6" in msg and "16x16" in msg, msg
    assert msg.endswith(f"{tmp_path / 'p0.png'}, {tmp_path / 'p2.png'}, {tmp_path / 'p4.png'}"), msg

"""Audit of `build_shards` (mutation audit): image encoding against a PIL reference, the output folder a build may
replace (and the order it replaces it in), all-unreadable shards, the skipped-rate boundary, a resumed build's
skipped list, and the manifest's split fields."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.shards import CLASSES, specs_for, write_patch_folder

from mmlnb_dist.data import build as B
from mmlnb_dist.data.build import SampleSpec, build_shards
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError

ALL_TRAIN = dict(val_fraction=0.0, test_fraction=0.0, group_by_slide=False)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _members(out: Path):
    """key -> sample of every shard in `out`."""
    return {s["__key__"]: s for tar in sorted(out.glob("*.tar")) for s in iter_shard_samples(tar)}


def _tars(out: Path):
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


def _good_specs(n_per_class: int = 2, seed: int = 0):
    return [SampleSpec(f"{c}_{i}", c, _png(_noise(20, 20, seed + 10 * k + i)))
            for k, c in enumerate(CLASSES) for i in range(n_per_class)]


def test_resize_and_centre_crop_match_a_pil_reference(tmp_path):
    """The shorter side is scaled to `image_size` (down or up, bicubic), then the centre square is kept."""
    size = 20
    arrays = {"tall_large": _noise(60, 40, 1), "wide_small": _noise(10, 14, 2), "exact": _noise(20, 26, 3)}
    specs = [SampleSpec(k, "UD", _png(a)) for k, a in arrays.items()]
    build_shards(specs, tmp_path / "out", BuildConfig(image_format="png", image_size=size, **ALL_TRAIN),
                 CLASSES, progress=False)
    got = _members(tmp_path / "out")
    for key, array in arrays.items():
        img = Image.fromarray(array)
        w, h = img.size
        scale = size / min(w, h)
        if scale != 1.0:
            img = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        want = np.asarray(img.crop((left, top, left + size, top + size)))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(got[key]["png"]))), want), key


def test_jpeg_members_are_encoded_at_the_configured_quality(tmp_path):
    array = _noise(24, 24, 4)
    build = BuildConfig(image_format="jpeg", image_size=24, jpeg_quality=40, **ALL_TRAIN)
    build_shards([SampleSpec("a", "UD", _png(array))], tmp_path / "out", build, CLASSES, progress=False)
    want = io.BytesIO()
    Image.fromarray(array).save(want, format="JPEG", quality=40, optimize=False, progressive=False)
    assert _members(tmp_path / "out")["a"]["jpg"] == want.getvalue()


def test_an_original_that_does_not_decode_is_skipped_not_shipped(tmp_path):
    """`image_format: original` stores the file's bytes: a file whose header reads but whose pixels do not (a cut
    copy) must be skipped and listed, not stored for training to trip over."""
    src = tmp_path / "src"
    src.mkdir()
    good = _png(_noise(20, 20, 5))
    (src / "good.png").write_bytes(good)
    (src / "cut.png").write_bytes(good[: len(good) // 2])
    specs = [SampleSpec("good", "UD", src / "good.png"), SampleSpec("cut", "UD", src / "cut.png")]
    build = BuildConfig(image_format="original", max_skipped_rate=0.5, **ALL_TRAIN)
    manifest = build_shards(specs, tmp_path / "out", build, CLASSES, progress=False)
    assert [s["key"] for s in manifest["skipped"]] == ["cut"]
    got = _members(tmp_path / "out")
    assert list(got) == ["good"] and got["good"]["png"] == good


def test_a_folder_that_is_not_a_shard_set_is_refused_and_left_as_it_was(tmp_path):
    """A wrong --out (a folder of the user's files, or a file) is refused; nothing in it is deleted."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ShardError, match="is not a shard set"):
        build_shards(_good_specs(), out, BuildConfig(image_format="png", image_size=16, **ALL_TRAIN), CLASSES,
                     progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "file"
    a_file.write_text("keep me too")
    with pytest.raises(ShardError, match="is a file"):
        build_shards(_good_specs(), a_file, BuildConfig(image_format="png", image_size=16, **ALL_TRAIN), CLASSES,
                     progress=False)
    assert a_file.read_text() == "keep me too"


def test_an_output_whose_replacement_was_stopped_is_replaced_again(tmp_path):
    """A build stopped while it replaced an old shard set leaves old shards, no manifest and the `.incomplete`
    marker: the next build replaces it (without the marker it would be refused as "not a shard set")."""
    build = BuildConfig(image_format="png", image_size=16, **ALL_TRAIN)
    build_shards(_good_specs(), tmp_path / "ref", build, CLASSES, progress=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "train-000000.tar").write_bytes(b"old shard")
    (out / "train-000007.tar").write_bytes(b"old shard")
    (out / B.INCOMPLETE).write_text("")
    build_shards(_good_specs(), out, build, CLASSES, progress=False)
    assert _tars(out) == _tars(tmp_path / "ref")
    assert not (out / B.INCOMPLETE).exists() and (out / "manifest.json").is_file()


def test_a_rebuild_with_fewer_shards_leaves_none_of_the_old_ones(tmp_path):
    specs = _good_specs(n_per_class=3)
    build_shards(specs, tmp_path / "out", BuildConfig(image_format="png", image_size=16, max_samples_per_shard=2,
                                                      **ALL_TRAIN), CLASSES, progress=False)
    fewer = BuildConfig(image_format="png", image_size=16, max_samples_per_shard=5, **ALL_TRAIN)
    build_shards(specs, tmp_path / "out", fewer, CLASSES, progress=False)
    build_shards(specs, tmp_path / "ref", fewer, CLASSES, progress=False)
    assert _tars(tmp_path / "out") == _tars(tmp_path / "ref") and len(_tars(tmp_path / "ref")) == 2


def test_the_manifest_is_moved_into_place_last(tmp_path, monkeypatch):
    """Shards first, manifest last: a build stopped in between never leaves a manifest vouching for shards that
    are not there yet."""
    out = tmp_path / "out"
    moved, real = [], os.replace

    def recording(src, dst):
        if Path(dst).parent == out:
            moved.append(Path(dst).name)
        return real(src, dst)

    monkeypatch.setattr(B.os, "replace", recording)
    build_shards(_good_specs(n_per_class=3), out, BuildConfig(image_format="png", image_size=16,
                                                              max_samples_per_shard=2, **ALL_TRAIN),
                 CLASSES, progress=False)
    assert len(moved) > 2 and moved[-1] == "manifest.json" and moved.count("manifest.json") == 1


def test_a_legacy_temporary_folder_of_a_live_build_is_kept_and_dead_ones_removed(tmp_path):
    """Older versions wrote `.<out>.partial-<pid>` beside the output: a build removes those of dead processes
    only (another version's build may still be writing into its own)."""
    live = tmp_path / f".out.partial-{os.getppid()}"
    dead = tmp_path / ".out.partial-999999999"
    for folder in (live, dead):
        folder.mkdir()
        (folder / "train-000000.tar").write_bytes(b"x")
    build_shards(_good_specs(), tmp_path / "out", BuildConfig(image_format="png", image_size=16, **ALL_TRAIN),
                 CLASSES, progress=False)
    assert live.is_dir() and not dead.exists()


def test_a_shard_of_only_unreadable_images_is_left_out_and_the_names_stay_consecutive(tmp_path):
    specs = _good_specs(n_per_class=2)
    specs[2].image = b"not an image"
    build = BuildConfig(image_format="png", image_size=16, max_samples_per_shard=1, max_skipped_rate=0.5,
                        **ALL_TRAIN)
    manifest = build_shards(specs, tmp_path / "out", build, CLASSES, progress=False)
    shards = manifest["splits"]["train"]["shards"]
    assert [e["file"] for e in shards] == [f"train-{i:06d}.tar" for i in range(5)]
    assert [e["num_samples"] for e in shards] == [1] * 5 and manifest["splits"]["train"]["num_samples"] == 5
    assert sorted(_tars(tmp_path / "out")) == [e["file"] for e in shards]
    assert [s["key"] for s in manifest["skipped"]] == [specs[2].key]


def test_a_skipped_rate_equal_to_the_limit_passes_and_one_more_image_fails(tmp_path):
    specs = [SampleSpec(f"s{i}", CLASSES[i % 3], _png(_noise(16, 16, i))) for i in range(10)]
    specs[0].image = b"junk"
    build = BuildConfig(image_format="png", image_size=16, max_skipped_rate=0.1, **ALL_TRAIN)
    manifest = build_shards(specs, tmp_path / "a", build, CLASSES, progress=False)  # 1 of 10 = the limit
    assert manifest["splits"]["train"]["num_samples"] == 9
    specs[1].image = b"junk"
    with pytest.raises(ShardError, match="2 of 10 input images unreadable"):
        build_shards(specs, tmp_path / "b", build, CLASSES, progress=False)


def test_no_test_split_is_written_at_test_fraction_zero(tmp_path):
    src = write_patch_folder(tmp_path / "src", per_class=4)
    manifest = build_shards(specs_for(src), tmp_path / "out", BuildConfig(image_format="png", image_size=16,
                                                                          val_fraction=0.25), CLASSES, progress=False)
    assert sorted(manifest["splits"]) == ["train", "val"]
    assert not list((tmp_path / "out").glob("test-*"))


def test_split_fields_say_what_was_done(tmp_path):
    """`group_by_slide` is recorded true only when slides were there to group by; `has_descriptions` when any
    sample has a text."""
    specs = _good_specs(n_per_class=2)
    specs[0].description = "one described patch"
    build = BuildConfig(image_format="png", image_size=16, val_fraction=0.0, group_by_slide=True)
    manifest = build_shards(specs, tmp_path / "out", build, CLASSES, progress=False)
    assert manifest["split"]["group_by_slide"] is False and manifest["has_descriptions"] is True
    for s in specs:
        s.slide_id, s.description = f"slide-{s.key}", None
    manifest = build_shards(specs, tmp_path / "out", build, CLASSES, progress=False)
    assert manifest["split"]["group_by_slide"] is True and manifest["has_descriptions"] is False


def test_a_resumed_build_lists_the_unreadable_images_of_the_shards_it_reused(tmp_path, monkeypatch):
    specs = [SampleSpec(f"s{i:02d}", CLASSES[i % 3], _png(_noise(16, 16, i))) for i in range(12)]
    for i in (0, 3, 6, 9):
        specs[i].image = b"junk"
    build = BuildConfig(image_format="png", image_size=16, max_samples_per_shard=1, max_skipped_rate=0.5,
                        **ALL_TRAIN)
    whole = build_shards(specs, tmp_path / "whole", build, CLASSES, progress=False)
    assert len(whole["skipped"]) == 4

    real, calls = B._encode, [0]

    def stopping(spec, config):
        calls[0] += 1
        if calls[0] > 8:
            raise KeyboardInterrupt
        return real(spec, config)

    monkeypatch.setattr(B, "_encode", stopping)
    with pytest.raises(KeyboardInterrupt):
        build_shards(specs, tmp_path / "out", build, CLASSES, progress=False)
    monkeypatch.setattr(B, "_encode", real)
    records = [json.loads(p.read_text()) for p in (tmp_path / "out").glob(".partial-*/.chunk-*.json")]
    assert any(r["skipped"] for r in records), "no kept chunk holds an unreadable image: the test proves nothing"
    resumed = build_shards(specs, tmp_path / "out", build, CLASSES, progress=False)
    assert resumed["skipped"] == whole["skipped"]
    assert (tmp_path / "out" / "manifest.json").read_bytes() == (tmp_path / "whole" / "manifest.json").read_bytes()


def test_a_multilabel_sample_stores_its_labels_in_class_order_beside_the_multi_hot_vector(tmp_path):
    """The label set is stored in class order, whatever order the input listed it in, so `labels` and `multi_hot`
    say the same thing and a rebuild from a reordered CSV writes the same bytes."""
    sets = [["D", "UD"], ["PD"], ["D", "PD", "UD"], ["UD"], ["PD", "D"], ["D"]]
    specs = [SampleSpec(f"m{i}", labels[0], _png(_noise(16, 16, i)), meta={"labels": labels})
             for i, labels in enumerate(sets)]
    build = BuildConfig(image_format="png", image_size=16, **ALL_TRAIN)
    build_shards(specs, tmp_path / "out", build, CLASSES, progress=False)
    for key, sample in _members(tmp_path / "out").items():
        meta = json.loads(sample["json"])
        on = set(sets[int(key[1:])])
        assert meta["labels"] == [c for c in CLASSES if c in on]
        assert meta["multi_hot"] == [int(c in on) for c in CLASSES]


@pytest.mark.parametrize("problem, message", [
    ("duplicate_key", "duplicate key 'UD_0'"),
    ("label_not_in_its_set", "label set \\['PD'\\] must be a non-empty list of classes holding the label 'UD'"),
    ("missing_file", "image file not found"),
])
def test_invalid_samples_are_refused_before_anything_is_written(tmp_path, problem, message):
    """Two samples under one key would be two images in the shards under one name (one shadowing the other in
    every lookup by key); a label set without the sample's own label contradicts its `cls`; a missing file would
    only be met mid-build."""
    specs = _good_specs()
    if problem == "duplicate_key":
        specs[1].key = specs[0].key
    elif problem == "label_not_in_its_set":
        for s in specs:
            s.meta["labels"] = [s.label]
        specs[0].meta["labels"] = ["PD"]
    else:
        specs[0].image = tmp_path / "gone.png"
    with pytest.raises(ShardError, match=message):
        build_shards(specs, tmp_path / "out", BuildConfig(image_format="png", image_size=16, **ALL_TRAIN), CLASSES,
                     progress=False)
    assert not (tmp_path / "out").exists()


def test_a_folder_filled_by_another_job_before_the_lock_was_taken_is_refused(tmp_path, monkeypatch):
    """The output is checked again once the lock is held: another job may have written it in between."""
    out = tmp_path / "out"
    real = B.FolderLock.acquire

    def acquire_after_another_job(self):
        out.mkdir(exist_ok=True)
        (out / "notes.txt").write_text("written meanwhile")
        return real(self)

    monkeypatch.setattr(B.FolderLock, "acquire", acquire_after_another_job)
    with pytest.raises(ShardError, match="is not a shard set"):
        build_shards(_good_specs(), out, BuildConfig(image_format="png", image_size=16, **ALL_TRAIN), CLASSES,
                     progress=False)
    assert (out / "notes.txt").read_text() == "written meanwhile" and not list(out.glob("*.tar"))

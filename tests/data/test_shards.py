"""Shard building, manifest, splits, determinism, atomic writes, input errors and verification."""
from __future__ import annotations

import json
import tarfile
from collections import Counter

import pytest
from support.shards import CLASSES, make_shard_set, specs_for, write_patch_folder

from mmlnb_dist.cli import main
from mmlnb_dist.config import ConfigError, load_config
from mmlnb_dist.core.files import sha256_file
from mmlnb_dist.data import build as build_mod
from mmlnb_dist.data.build import SampleSpec, build_shards
from mmlnb_dist.data.collect import collect_samples
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError, ShardSet
from mmlnb_dist.data.split import split_samples
from mmlnb_dist.data.verify import verify_shards
from mmlnb_dist.data.writer import write_tar_shard


def test_round_trip_manifest_counts_and_checksums(tmp_path):
    out = make_shard_set(tmp_path, per_class=10, max_per_shard=7, val_fraction=0.2, test_fraction=0.2)
    m = ShardSet.open(out).manifest
    assert m["format"] == "mmlnb-shards/1" and m["classes"] == ["UD", "PD", "D"]
    assert set(m["splits"]) == {"train", "val", "test"}
    assert {s: m["splits"][s]["num_samples"] for s in m["splits"]} == {"train": 18, "val": 6, "test": 6}
    assert m["has_descriptions"] is True and m["skipped"] == []
    seen = {}
    for split, info in m["splits"].items():
        for entry in info["shards"]:
            path = out / entry["file"]
            assert entry["file"].startswith(f"{split}-") and entry["num_samples"] <= 7
            assert entry["bytes"] == path.stat().st_size
            assert entry["sha256"] == sha256_file(path)
            samples = list(iter_shard_samples(path))
            assert len(samples) == entry["num_samples"]
            counts = Counter(m["classes"][int(s["cls"])] for s in samples)
            assert {c: counts.get(c, 0) for c in m["classes"]} == entry["class_counts"]
            for s in samples:
                meta = json.loads(s["json"])
                assert meta["label"] == m["classes"][int(s["cls"])]
                assert s["txt"].decode().startswith(f"a {meta['label']} patch")
                assert s["png"][:8] == b"\x89PNG\r\n\x1a\n"
                seen[s["__key__"]] = split
    assert len(seen) == 30  # every input exactly once, no key in two splits
    assert verify_shards(out, progress=False).ok


def test_stratified_split_exact_to_one_sample_per_class(tmp_path):
    specs = [SampleSpec(f"{c}_{i}", c, b"x") for c, n in (("UD", 23), ("PD", 17), ("D", 41)) for i in range(n)]
    build = BuildConfig(val_fraction=0.2, test_fraction=0.15, group_by_slide=False)
    parts = split_samples(specs, build)
    for c, n in (("UD", 23), ("PD", 17), ("D", 41)):
        for split, frac in (("val", 0.2), ("test", 0.15)):
            got = sum(1 for s in parts[split] if s.label == c)
            assert abs(got - n * frac) <= 1, (c, split, got)
    assert sum(len(v) for v in parts.values()) == 81


def test_grouped_split_keeps_each_slide_in_one_split(tmp_path):
    specs = [SampleSpec(f"{c}_{i}", c, b"x", slide_id=f"{c}-s{i % 5}") for c in ("UD", "PD", "D") for i in range(30)]
    parts = split_samples(specs, BuildConfig(val_fraction=0.2, test_fraction=0.2))
    where = {}
    for split, samples in parts.items():
        for s in samples:
            assert where.setdefault(s.slide_id, split) == split, f"slide {s.slide_id} in two splits"
    # Stratified at slide level: every class has a slide in every split (5 slides per class, 20%/20%).
    for split in ("train", "val", "test"):
        assert {s.label for s in parts[split]} == {"UD", "PD", "D"}


def test_rebuild_is_byte_identical_and_input_order_free(tmp_path):
    src = write_patch_folder(tmp_path / "src", per_class=5)
    specs = specs_for(src, slides_per_class=2)
    build = BuildConfig(max_samples_per_shard=4, image_format="jpeg", image_size=16, seed=3)
    build_shards(specs, tmp_path / "a", build, CLASSES, progress=False)
    build_shards(list(reversed(specs)), tmp_path / "b", build, CLASSES, progress=False)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    with tarfile.open(tmp_path / "a" / "train-000000.tar") as tar:
        for info in tar.getmembers():
            assert (info.mtime, info.uid, info.gid, info.uname, info.mode) == (0, 0, 0, "", 0o644)


def test_interrupted_build_leaves_no_finished_looking_output(tmp_path, monkeypatch):
    src = write_patch_folder(tmp_path / "src", per_class=6)
    real = build_mod.write_tar_shard
    calls = {"n": 0}

    def failing(path, samples, classes):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(path, samples, classes)

    monkeypatch.setattr(build_mod, "write_tar_shard", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_shards(specs_for(src), tmp_path / "out", BuildConfig(max_samples_per_shard=3, image_format="png", image_size=24),
                     CLASSES, progress=False)
    # Nothing finished-looking: no manifest, nothing visible; the one finished shard is kept, hidden, for the same
    # build to resume from (tests/data/test_build_resume.py).
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists() and not [p for p in out.iterdir() if not p.name.startswith(".")]
    assert [p.name for p in tmp_path.iterdir() if p.name != "out"] == ["src"]
    assert [t.name for t in next(out.glob(".partial-*")).glob("*.tar")] == ["train-000000.tar"]
    # A stale temp folder of a killed build (dead pid) is removed by the next build.
    stale = tmp_path / ".out.partial-999999999"
    stale.mkdir()
    (stale / "train-000000.tar").write_bytes(b"junk")
    monkeypatch.setattr(build_mod, "write_tar_shard", real)
    build_shards(specs_for(src), tmp_path / "out", BuildConfig(image_format="png", image_size=24), CLASSES, progress=False)
    assert not stale.exists() and (tmp_path / "out" / "manifest.json").is_file()


def test_write_tar_shard_partial_file_removed_on_error(tmp_path):
    def samples():
        yield {"__key__": "a", "png": b"1", "cls": "0"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_tar_shard(tmp_path / "x.tar", samples(), ["UD", "PD", "D"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["missing", "unknown_label", "empty_class", "bad_csv"])
def test_input_errors_fail_before_writing(tmp_path, case, capsys):
    out = tmp_path / "out"
    if case == "missing":
        inp, expect = tmp_path / "nope", "input not found"
    elif case == "unknown_label":
        inp = write_patch_folder(tmp_path / "src", per_class=2, classes=("UD", "PD", "XX"))
        expect = "unknown label folder 'XX'"
    elif case == "empty_class":
        inp = write_patch_folder(tmp_path / "src", per_class=2)
        for p in (inp / "PD").iterdir():
            p.unlink()
        expect = "empty class folder"
    else:
        inp = tmp_path / "m.csv"
        inp.write_text("image,klass\na.png,UD\n")
        expect = "must have columns 'path' (or 'file') and 'label'"
    assert main(["shards", "build", "--input", str(inp), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert expect in err and (str(inp.name) in err)
    assert not out.exists()


def test_unknown_label_in_csv_names_the_file(tmp_path):
    write_patch_folder(tmp_path, per_class=1)
    (tmp_path / "m.csv").write_text("path,label\nUD/UD_000.png,UD\nPD/PD_000.png,ZZ\n")
    with pytest.raises(ShardError, match=r"PD_000.png: unknown label 'ZZ'"):
        collect_samples(tmp_path / "m.csv", CLASSES)


def test_bad_config_values_fail_before_writing(tmp_path, capsys):
    src = write_patch_folder(tmp_path / "src", per_class=2)
    for override, key in (("data.build.val_fraction=0.7", "val_fraction + test_fraction"),
                          ("data.build.jpeg_quality=0", "data.build.jpeg_quality"),
                          ("data.build.image_format=gif", "data.build.image_format"),
                          ("data.build.shard_size=3", "unknown config key")):
        override_args = [override] if "val_fraction" not in override else [override, "data.build.test_fraction=0.4"]
        assert main(["shards", "build", "--input", str(src), "--out", str(tmp_path / "o"), *override_args]) == 2
        assert key in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError):
        load_config(None, ["data.build.max_samples_per_shard=0"])


def test_corrupt_input_images_are_skipped_and_reported(tmp_path, capsys):
    src = write_patch_folder(tmp_path / "src", per_class=10)
    (src / "UD" / "UD_003.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    out = tmp_path / "out"
    assert main(["shards", "build", "--input", str(src), "--out", str(out), "--no-progress",
                 "data.build.max_skipped_rate=0.05"]) == 0
    printed = capsys.readouterr().out
    assert "UD_003.png" in printed and "skipped 1" in printed
    m = ShardSet.open(out).manifest
    assert [s["key"] for s in m["skipped"]] == ["UD_UD_003"]
    assert sum(i["num_samples"] for i in m["splits"].values()) == 29
    # Above the rate the build fails and leaves nothing behind.
    assert main(["shards", "build", "--input", str(src), "--out", str(tmp_path / "o2"), "--no-progress",
                 "data.build.max_skipped_rate=0.01"]) == 2
    assert "unreadable" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_verify_reports_corrupt_image_and_truncated_tar_with_shard_and_key(tmp_path, capsys):
    out = make_shard_set(tmp_path, per_class=6, max_per_shard=5)
    assert main(["shards", "verify", str(out), "--no-progress"]) == 0
    assert "train" in capsys.readouterr().out
    # Rewrite the first shard with one corrupt image (manifest not updated: sha256 differs too).
    first = out / "train-000000.tar"
    samples = list(iter_shard_samples(first))
    bad_key = samples[1]["__key__"]
    samples[1]["png"] = samples[1]["png"][:40]
    write_tar_shard(first, samples, ["UD", "PD", "D"])
    # Truncate the second shard in the middle.
    second = out / "train-000001.tar"
    data = second.read_bytes()
    second.write_bytes(data[: len(data) // 2 + 100])
    assert main(["shards", "verify", str(out), "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert f"train-000000.tar key {bad_key}: image not decodable" in text
    assert "train-000000.tar: sha256 differs" in text
    assert "shard train-000001.tar: truncated or corrupt tar" in text


def test_verify_reports_a_manifest_sample_count_the_shards_do_not_hold(tmp_path, capsys):
    """A manifest that claims one sample more than a shard and its split hold (tar bytes untouched, so size and
    sha256 still match) fails `shards verify`, naming the shard and the split. Without the count checks a
    manifest edited by hand, or written by a buggy build, would pass and training would plan on samples that
    are not there."""
    out = make_shard_set(tmp_path, per_class=6, max_per_shard=5)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["splits"]["train"]["shards"][0]
    n, split_n = entry["num_samples"], manifest["splits"]["train"]["num_samples"]
    entry["num_samples"] += 1
    manifest["splits"]["train"]["num_samples"] += 1
    manifest_path.write_text(json.dumps(manifest))
    problems = verify_shards(out, progress=False).problems
    assert f"{entry['file']}: {n} samples, manifest says {n + 1}" in problems
    assert f"split train: {split_n} valid samples, manifest says {split_n + 1}" in problems
    assert len(problems) == 2, problems  # only the counts are wrong: bytes and sha256 still match
    assert main(["shards", "verify", str(out), "--no-progress"]) == 1
    assert f"{entry['file']}: {n} samples, manifest says {n + 1}" in capsys.readouterr().out


def test_opening_a_broken_shard_set_names_the_path(tmp_path):
    with pytest.raises(ShardError, match="not found"):
        ShardSet.open(tmp_path / "missing").manifest
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ShardError, match="manifest.json is not valid JSON"):
        ShardSet.open(tmp_path).manifest


def test_folder_with_labels_csv_and_descriptions_via_synth_cli(tmp_path, capsys):
    src = tmp_path / "src"
    assert main(["data", "synth", "--out", str(src), "--n", "30", "--size", "32", "--n-slides", "6"]) == 0
    assert main(["shards", "build", "--input", str(src), "--out", str(tmp_path / "sh"), "--no-progress",
                 "data.build.image_size=32", "data.build.val_fraction=0.34"]) == 0
    m = ShardSet.open(tmp_path / "sh").manifest
    assert m["split"]["group_by_slide"] is True and m["has_descriptions"] is True
    # 6 slides, 2 per class: one slide of each class goes to val.
    assert m["splits"]["val"]["class_counts"] == {"UD": 5, "PD": 5, "D": 5}
    slides = {}
    for split, info in m["splits"].items():
        for e in info["shards"]:
            for s in iter_shard_samples(tmp_path / "sh" / e["file"]):
                sid = json.loads(s["json"])["slide_id"]
                assert slides.setdefault(sid, split) == split
                assert s["txt"]


# -- splits that cannot serve their purpose are named (issue 11 item 9) ----------------------------------------
def _specs(n_slides_per_class: int, per_slide: int = 4, with_slides: bool = True):
    return [SampleSpec(f"{c}_{s}_{i}", c, b"unused", slide_id=f"{c}-s{s}" if with_slides else None)
            for c in CLASSES for s in range(n_slides_per_class) for i in range(per_slide)]


def test_split_by_patch_without_slide_ids_warns_of_leakage(caplog):
    with caplog.at_level("WARNING", logger="mmlnb_dist.data.split"):
        split_samples(_specs(2, with_slides=False), BuildConfig(val_fraction=0.25))
    text = caplog.text
    assert "slide id" in text and "train and val" in text and "slide_id" in text


def test_split_with_slide_ids_does_not_warn_of_leakage(caplog):
    with caplog.at_level("WARNING", logger="mmlnb_dist.data.split"):
        splits = split_samples(_specs(4), BuildConfig(val_fraction=0.25))
    assert splits["val"] and "leak" not in caplog.text and "empty" not in caplog.text


@pytest.mark.parametrize("seed", range(5))
def test_a_class_with_slides_to_spare_gives_every_held_out_split_one(caplog, seed):
    """3 slides of a class at fractions 0.2/0.2: laid end to end, no slide's midpoint falls in val, so val came out
    empty and training stopped for want of it. A class that can spare slides (one stays in train) now gives each
    held-out split with a non-zero fraction one slide; with 2 slides, val (which training needs) comes first."""
    def slides(splits, name):
        return sorted({s.slide_id for s in splits[name]})

    with caplog.at_level("WARNING", logger="mmlnb_dist.data.split"):
        three = split_samples(_specs(3), BuildConfig(val_fraction=0.2, test_fraction=0.2, seed=seed))
    for name in ("train", "val", "test"):
        assert [sid.split("-")[0] for sid in slides(three, name)] == sorted(CLASSES), (name, slides(three, name))
    assert "empty" not in caplog.text
    two = split_samples(_specs(2), BuildConfig(val_fraction=0.1, test_fraction=0.1, seed=seed))
    assert len(slides(two, "train")) == len(slides(two, "val")) == len(CLASSES) and not two["test"]
    # a class large enough to reach the fractions itself is split as before
    many = split_samples(_specs(10), BuildConfig(val_fraction=0.2, test_fraction=0.2, seed=seed))
    assert [len(slides(many, n)) for n in ("train", "val", "test")] == [6 * len(CLASSES), 2 * len(CLASSES),
                                                                       2 * len(CLASSES)]


def test_empty_val_split_from_too_few_slides_warns_with_the_remedy(caplog):
    with caplog.at_level("WARNING", logger="mmlnb_dist.data.split"):
        splits = split_samples(_specs(1), BuildConfig(val_fraction=0.2))
    assert splits["val"] == []
    text = caplog.text
    assert "val split is empty" in text
    for remedy in ("data.build.val_fraction", "data.build.stratify=false", "data.build.group_by_slide=false"):
        assert remedy in text


def test_rebuild_with_an_unreadable_image_is_byte_identical(tmp_path):
    """The skipped list's reason named PIL's buffer by its memory address (`<_io.BytesIO object at 0x7f...>`), so two
    builds of the same inputs wrote different manifests (and the described set's provenance, which digests the
    manifest, saw a changed input)."""
    src = write_patch_folder(tmp_path / "src", per_class=5)
    (src / "UD" / "empty.png").write_bytes(b"not an image")
    specs = specs_for(src, slides_per_class=2)
    build = BuildConfig(max_samples_per_shard=4, image_format="png", image_size=16, seed=3, max_skipped_rate=0.2)
    for out in ("a", "b"):
        manifest = build_shards(specs, tmp_path / out, build, CLASSES, progress=False)
    assert [s["key"] for s in manifest["skipped"]] == [s.key for s in specs if s.image.name == "empty.png"]
    assert "cannot identify image file" in manifest["skipped"][0]["reason"]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()

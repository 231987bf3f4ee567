"""Mutation audit of `shards verify` (`data.verify`): each kind of bad sample is counted where it is, and nothing
else is reported. The shards are rewritten with the manifest's bytes and sha256 updated, so only the problem each
test plants can be found."""
from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

from mmlnb_dist.data.config import BuildConfig, MultiLabelConfig
from mmlnb_dist.data.multilabel import build_multilabel_shards
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.verify import verify_shards
from mmlnb_dist.data.writer import write_tar_shard

from support.shards import CLASSES, make_shard_set


def _rewrite(shards, manifest, entry, samples, classes):
    """Write `samples` as `entry`'s shard, keeping its counts but recording its new bytes and sha256. Written with
    webdataset's own TarWriter: `write_tar_shard` refuses the bad class index a test plants."""
    from webdataset import TarWriter

    from mmlnb_dist.core.files import sha256_file

    path = shards / entry["file"]
    with open(path, "wb") as stream:
        writer = TarWriter(stream, user="", group="", mode=0o644, mtime=0, encoder=False)
        for sample in samples:
            writer.write({k: v for k, v in sample.items() if k == "__key__" or not k.startswith("__")})
        writer.close()
    entry.update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (shards / "manifest.json").write_text(json.dumps(manifest))


def test_each_bad_sample_is_reported_once_and_a_good_set_reports_nothing(tmp_path):
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=10, val_fraction=0.0)
    assert verify_shards(shards, progress=False).problems == []
    manifest = json.loads((shards / "manifest.json").read_text())
    entry = manifest["splits"]["train"]["shards"][0]
    samples = list(iter_shard_samples(shards / entry["file"]))
    keys = [s["__key__"] for s in samples]
    samples[0]["cls"] = b"-1"  # a negative index is no class (not the last one)
    meta = json.loads(samples[1]["json"])
    other = CLASSES[(CLASSES.index(meta["label"]) + 1) % 3]
    samples[1]["json"] = json.dumps({**meta, "label": other}).encode()
    _rewrite(shards, manifest, entry, samples, CLASSES)
    report = verify_shards(shards, progress=False)
    label1 = CLASSES[int(samples[1]["cls"])]
    label0 = json.loads(samples[0]["json"])["label"]
    assert report.problems[:2] == [f"{entry['file']} key {keys[0]}: missing or invalid cls b'-1'",
                                   f"{entry['file']} key {keys[1]}: cls says {label1} but json label says {other}"]
    assert [p.split(":")[0] for p in report.problems[2:]] == [entry["file"], "split train"], report.problems
    assert report.counts["train"][label0] == 1  # the sample with no valid class is not counted


def test_a_key_in_two_shards_a_stray_tar_and_a_wrong_byte_count_are_named(tmp_path):
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=10, val_fraction=0.0)
    manifest = json.loads((shards / "manifest.json").read_text())
    first = manifest["splits"]["train"]["shards"][0]
    copy = list(iter_shard_samples(shards / first["file"]))[2]
    second = write_tar_shard(shards / "train-000001.tar", [copy], CLASSES)
    manifest["splits"]["train"]["shards"].append(second)
    manifest["splits"]["train"]["num_samples"] += 1
    first["bytes"] += 1  # the manifest's size is wrong, its sha256 right
    (shards / "manifest.json").write_text(json.dumps(manifest))
    (shards / "stray.tar").write_bytes((shards / "train-000001.tar").read_bytes())
    assert verify_shards(shards, progress=False).problems == [
        f"{first['file']}: {first['bytes'] - 1} bytes, manifest says {first['bytes']}",
        f"train-000001.tar key {copy['__key__']}: duplicate key (also in {first['file']})",
        ("stray.tar: tar file not listed in the manifest; move it out of the shard folder (a shard of another set?) "
         "or rebuild the set")]


def test_class_counts_differing_from_the_manifest_are_reported(tmp_path):
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=10, val_fraction=0.0)
    manifest = json.loads((shards / "manifest.json").read_text())
    entry = manifest["splits"]["train"]["shards"][0]
    entry["class_counts"]["UD"] += 1
    entry["class_counts"]["PD"] -= 1
    (shards / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_shards(shards, progress=False).problems
    assert len(problems) == 1 and problems[0].startswith(f"{entry['file']}: class counts"), problems


def test_multilabel_sets_count_each_label_once_per_sample_and_refuse_unknown_labels(tmp_path):
    (tmp_path / "img").mkdir()
    rows = []
    for i, cell in enumerate(["A|B", "B", "A", "B|A"]):
        Image.fromarray(np.full((16, 16, 3), 9 * i, np.uint8)).save(tmp_path / "img" / f"p{i}.png")
        rows.append({"image": f"img/p{i}.png", "text": f"t{i}", "labels": cell})
    with open(tmp_path / "pairs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["image", "text", "labels"])
        writer.writeheader()
        writer.writerows(rows)
    shards = tmp_path / "shards"
    manifest = build_multilabel_shards(tmp_path / "pairs.csv", shards, BuildConfig(
        val_fraction=0.0, test_fraction=0.0, image_format="png", image_size=16), MultiLabelConfig(), progress=False)
    assert verify_shards(shards, progress=False).ok
    entry = manifest["splits"]["train"]["shards"][0]
    samples = list(iter_shard_samples(shards / entry["file"]))
    by_row = {json.loads(s["json"])["row"]: s for s in samples}
    meta = json.loads(by_row[3]["json"])
    by_row[3]["json"] = json.dumps({**meta, "labels": ["A", "A"]}).encode()  # one label written twice: held once
    _rewrite(shards, manifest, entry, samples, manifest["classes"])
    assert verify_shards(shards, progress=False).problems == []
    meta = json.loads(by_row[2]["json"])
    by_row[2]["json"] = json.dumps({**meta, "labels": ["B", "Q"]}).encode()
    _rewrite(shards, manifest, entry, samples, manifest["classes"])
    problems = verify_shards(shards, progress=False).problems
    assert problems[0] == f"{entry['file']} key {by_row[2]['__key__']}: json 'labels' ['B', 'Q'] is not a non-empty " \
                          f"list of classes"
    assert len(problems) == 2 and "label counts" in problems[1], problems  # B no longer counted for it


def test_a_shard_cut_on_a_block_boundary_between_samples_is_called_truncated(tmp_path):
    # tarfile reads such a tar as a short one without error: only the sizes and counts differed, and no line said
    # the file had been cut (a copy or download stopped early)
    import tarfile

    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=10, val_fraction=0.0)
    manifest = json.loads((shards / "manifest.json").read_text())
    entry = manifest["splits"]["train"]["shards"][0]
    path = shards / entry["file"]
    keys = [s["__key__"] for s in iter_shard_samples(path)]
    with tarfile.open(path) as tar:
        cut = next(m.offset for m in tar.getmembers() if m.name.startswith(keys[3] + "."))
    path.write_bytes(path.read_bytes()[:cut])
    problems = verify_shards(shards, progress=False).problems
    assert (f"{entry['file']}: truncated: the tar ends after key '{keys[2]}' without its end-of-archive block "
            f"({cut} bytes, manifest says {entry['bytes']}); restore the shard or rebuild the shard set") in problems

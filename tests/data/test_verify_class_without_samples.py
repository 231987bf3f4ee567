"""`shards verify` on a set whose manifest lists a class no split holds a sample of (added to `classes` by hand, or
built with a class its data lacks): it passed as ok without a word, yet training gives the model an output no sample
trains (predict may still name that class) and every val/test metric leaves the class out. It is now named in a
warning; the set is still ok (a build with such a class is allowed, with the same warning)."""
from __future__ import annotations

import json
import logging

from mmlnb_dist.data.verify import verify_shards

from support.shards import make_shard_set


def test_a_class_with_no_sample_in_any_split_is_named_in_a_warning(tmp_path, caplog):
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=10, val_fraction=0.0)
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data"):
        assert verify_shards(shards, progress=False).warnings == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["classes"].append("Extra")
    (shards / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data"):
        report = verify_shards(shards, progress=False)
    assert report.ok and report.counts["train"]["Extra"] == 0
    assert len(report.warnings) == 1 and "class Extra: no sample in any split" in report.warnings[0]
    assert any("Extra" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING), caplog.text

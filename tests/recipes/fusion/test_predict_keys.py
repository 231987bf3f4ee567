"""Every `predict` output row has its own `key`: a folder's `sub1/p1.png` and `sub1_p1.png` were both `sub1_p1`,
`plain.png` and `plain.jpg` both `plain`, and `A/p1.png` beside `B/p1.png` (two folders given) both `p1`, so rows
of different images could not be told apart or joined back by key. A key no other input has stays as it was (the
path in the folder without its extension, `/` as `_`; a file's stem; a shard sample's key)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from support.fusion import make_shards


def _images(root, names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(root / name)


def test_inputs_that_would_share_a_key_are_keyed_by_their_paths(tmp_path):
    from mmlnb_dist.predict import collect_inputs

    _images(tmp_path / "in", ["sub1/p1.png", "sub1_p1.png", "plain.png", "plain.jpg", "only.png"])
    items, failed = collect_inputs([tmp_path / "in"])
    keys = {it["source"][len(str(tmp_path / "in")) + 1:]: it["key"] for it in items}
    assert failed == [] and keys == {"sub1/p1.png": "sub1/p1.png", "sub1_p1.png": "sub1_p1.png",
                                     "plain.png": "plain.png", "plain.jpg": "plain.jpg", "only.png": "only"}


def test_the_same_name_in_two_folders_given_gets_two_keys(tmp_path):
    from mmlnb_dist.predict import collect_inputs

    _images(tmp_path, ["A/p1.png", "B/p1.png", "B/p2.png"])
    items, _ = collect_inputs([tmp_path / "A", tmp_path / "B"])
    assert [it["key"] for it in items] == [str(tmp_path / "A" / "p1.png"), str(tmp_path / "B" / "p1.png"), "p2"]


def test_shard_samples_keep_their_keys(tmp_path):
    from mmlnb_dist.predict import collect_inputs

    shards = make_shards(tmp_path, n=12, size=16)
    items, _ = collect_inputs([shards])
    assert all(it["key"] == it["source"].rsplit(":", 1)[1] for it in items)


def test_two_shard_sets_with_the_same_sample_keys_are_keyed_apart_and_still_read(tmp_path):
    # (a copy of one shard set: the same sample keys in two places)
    import shutil

    from mmlnb_dist.predict import collect_inputs
    from mmlnb_dist.predict.inputs import with_image_bytes

    shards = make_shards(tmp_path, n=12, size=16)
    copy = shutil.copytree(shards, tmp_path / "copy")
    items, _ = collect_inputs([shards, copy])
    assert len({it["key"] for it in items}) == len(items) == 24
    assert all(it["data"] for it in with_image_bytes(items))

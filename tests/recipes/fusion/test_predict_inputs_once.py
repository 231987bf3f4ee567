"""`predict a.png a.png patches/` (a file also inside a folder given, a shard set and one of its tars) predicted the
same image once per mention: repeated rows with one key and one source, and per-slide aggregates that counted
that patch two or three times. Each file and each shard sample is now predicted once, at its first mention, and
the repeats are counted in the log."""
from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image

from support.fusion import make_shards


def _png(path, value: int) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), value, dtype=np.uint8)).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def test_a_file_named_twice_or_also_inside_a_given_folder_is_one_input(tmp_path, monkeypatch, caplog):
    from mmlnb_dist.predict import collect_inputs

    for name, value in (("a.png", 10), ("sub/b.png", 20), ("c.png", 30)):
        _png(tmp_path / "patches" / name, value)
    monkeypatch.chdir(tmp_path)
    given = [tmp_path / "patches" / "a.png", "patches/a.png", tmp_path / "patches", "patches/sub/../c.png"]
    with caplog.at_level(logging.INFO):
        items, failed = collect_inputs(given)
    assert failed == []
    assert [it["source"] for it in items] == [str(tmp_path / "patches" / "a.png"),  # first mention kept
                                              str(tmp_path / "patches" / "c.png"),
                                              str(tmp_path / "patches" / "sub" / "b.png")]
    assert "3 input(s) named more than once" in caplog.text


def test_a_shard_set_and_one_of_its_tars_give_each_sample_once(tmp_path):
    from mmlnb_dist.predict import collect_inputs

    shards = make_shards(tmp_path, n=30, size=32)
    whole, _ = collect_inputs([shards])
    tar = sorted(shards.glob("train-*.tar"))[0]
    both, failed = collect_inputs([shards, tar, shards])
    assert failed == [] and [it["source"] for it in both] == [it["source"] for it in whole]
    assert len({it["source"] for it in whole}) == len(whole) == 30


def test_a_link_with_its_own_name_is_an_input_of_its_own(tmp_path):
    # B/p9.png links to A/p1.png (a patch filed under a second slide's folder without copying it): it was dropped
    # as "named more than once", so B's slide lost a patch and the run still exited 0.
    from mmlnb_dist.predict import collect_inputs

    _png(tmp_path / "A" / "p1.png", 10)
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "p9.png").symlink_to(tmp_path / "A" / "p1.png")
    items, failed = collect_inputs([tmp_path / "A", tmp_path / "B", tmp_path / "B" / "p9.png"])
    assert failed == []
    assert [it["source"] for it in items] == [str(tmp_path / "A" / "p1.png"), str(tmp_path / "B" / "p9.png")]

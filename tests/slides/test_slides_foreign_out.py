"""`slides tile --out` a folder of the user's own files (not a shard set: the slide folder itself, say) is refused
before any slide is tiled: it used to tile every slide into `<out>.work/` (hours on a real cohort) and only then
refuse, when the shards were written. An empty folder and the run's own earlier shard set are written as before."""
from __future__ import annotations

import json

import pytest

from support.slides import tile as _tile, two_slides

@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    return two_slides(tmp_path_factory.mktemp("wsi"))


def test_an_out_folder_of_other_files_is_refused_before_any_slide_is_tiled(slides, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert _tile(slides, out) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "not a shard set" in err, err
    assert not (tmp_path / "mine.work" / "slides").exists()  # nothing tiled
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_an_empty_out_folder_and_an_earlier_shard_set_are_still_written(slides, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert _tile(slides, out) == 0
    assert _tile(slides, out, "--tile-size", "128") == 0  # a rerun into its own shard set
    assert json.loads((out / "manifest.json").read_text())["provenance"]["slides"]["tile_size"] == 128

"""A resumed run reads each completed slide's staged tiles back from `<out>.work/`. One tile file gone from there
(a clean-up script, a partial copy, a tile deleted by hand) ended the run, after every slide was tiled, with a
FileNotFoundError traceback. Such a slide is tiled again (the others are reused) and the shards are whole."""
from __future__ import annotations

import json

from support.slides import tile, two_slides


def _samples(out):
    manifest = json.loads((out / "manifest.json").read_text())
    return sum(split["num_samples"] for split in manifest["splits"].values())


def test_a_slide_with_a_missing_staged_tile_is_tiled_again(tmp_path, capsys):
    slides = two_slides(tmp_path / "wsi")
    out = tmp_path / "out"
    assert tile(slides, out) == 0, capsys.readouterr().err
    whole = _samples(out)
    staged = sorted((tmp_path / "out.work" / "slides" / "UD-0" / "tiles").iterdir())
    assert staged
    staged[0].unlink()
    code = tile(slides, out)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert _samples(out) == whole
    assert staged[0].is_file()  # tiled again, to the same tiles
    assert "slide UD-0: 1 of" in printed.err and "tiled again" in printed.err, printed.err
    assert "resumed: 1 slide(s)" in printed.out  # PD-0 was reused

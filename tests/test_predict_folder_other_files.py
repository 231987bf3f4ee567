"""`predict` on a folder names the files it leaves out for not being images (a .gif patch, a note): they were
dropped without a word. Hidden files are not named; a folder without any image is a failure that says why."""
from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from mmlnb_dist.predict.inputs import collect_inputs


def test_a_folders_files_that_are_not_images_are_named_in_a_warning(tmp_path, caplog):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "sub" / "b.gif")
    (folder / "notes.txt").write_text("x")
    (folder / ".DS_Store").write_text("x")
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist"):
        items, failed = collect_inputs([folder])
    assert [it["key"] for it in items] == ["a"] and failed == []
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "2 files" in warning and "in/notes.txt" in warning and "in/sub/b.gif" in warning, warning
    assert ".DS_Store" not in warning

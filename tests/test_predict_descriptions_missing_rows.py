"""A model that reads text, given images of which some have no row in `--descriptions FILE`: the refusal counted
them and named the first, but told to "Give --descriptions FILE", the flag already given. Now it names the file as
lacking rows for them (the first named, the count kept)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.predict.errors import PredictError
from mmlnb_dist.predict.inputs import require_descriptions


def _png(path: Path) -> Path:
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(path)
    return path


def test_images_without_a_row_of_the_given_file_name_the_file(tmp_path):
    items = [{"source": str(p), "path": p, "description": d} for p, d in
             [(_png(tmp_path / "a.png"), "text"), (_png(tmp_path / "b.png"), ""), (_png(tmp_path / "c.png"), "")]]
    table = tmp_path / "descs.csv"
    with pytest.raises(PredictError) as err:
        require_descriptions("models:/nb@champion", items, table)
    text = str(err.value)
    assert "2 of 3" in text and str(tmp_path / "b.png") in text, text
    assert f"{table} has no description for them" in text and "Give --descriptions FILE" not in text, text

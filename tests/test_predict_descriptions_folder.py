"""`predict --descriptions <a folder>` said "descriptions file not found" of a folder that is there; it now says
the path is a folder and which file is expected (a CSV or JSONL with an image column and a description column),
before any model loads or output is written. A missing path is still named as not found."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.description_table import DescriptionsError, DescriptionTable
from mmlnb_dist.predict import predict_to_file


def test_a_folder_given_as_the_descriptions_file_is_named_a_folder(tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(img)
    folder = tmp_path / "descs"
    folder.mkdir()
    with pytest.raises(DescriptionsError) as err:  # (the model named does not exist: nothing got to loading it)
        predict_to_file("models:/none@champion", [img], tmp_path / "p.csv", descriptions=folder,
                        tracking_uri=f"sqlite:///{tmp_path / 'none.db'}")
    text = str(err.value)
    assert f"{folder} is a folder" in text and "not found" not in text, text
    assert "CSV or JSONL" in text and "description" in text, text
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "p.csv.resume").exists()
    (folder / "descs.csv").write_text("path,description\na.png,tumour\n")
    with pytest.raises(DescriptionsError, match=r"is a folder.*the folder holds descs\.csv"):
        DescriptionTable.read(folder)


def test_a_missing_descriptions_file_is_still_not_found(tmp_path):
    with pytest.raises(DescriptionsError, match=r"descriptions file not found: .*gone\.csv"):
        DescriptionTable.read(tmp_path / "gone.csv")

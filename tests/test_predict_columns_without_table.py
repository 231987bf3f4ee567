"""`--slide-column` and `--description-column` name columns of `--descriptions`: given without that file they were
ignored without a word (a shard set's own slide ids aggregated, while the user asked for another grouping, e.g. by
patient); now refused before any model loads or any input is read, naming the flag and what to give."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict.errors import PredictError


@pytest.mark.parametrize("flag, kwargs", [("--slide-column patient", {"slide_column": "patient"}),
                                          ("--description-column caption", {"description_column": "caption"})])
def test_a_column_of_descriptions_without_the_file_is_refused(tmp_path, flag, kwargs):
    img = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(img)
    with pytest.raises(PredictError) as err:  # (the model named does not exist: nothing got as far as loading it)
        predict_to_file("models:/none@champion", [img], tmp_path / "p.csv",
                        tracking_uri=f"sqlite:///{tmp_path / 'none.db'}", **kwargs)
    assert flag in str(err.value) and "--descriptions" in str(err.value), err.value
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "p.csv.resume").exists()

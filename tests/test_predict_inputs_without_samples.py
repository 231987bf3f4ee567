"""Inputs that were read but hold nothing to predict (a shard with no samples) were refused with "nothing to
predict: no inputs given", as if no path had been typed: now the inputs are named, and what they lack."""
from __future__ import annotations

import tarfile

import pytest

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict.errors import PredictError


def test_inputs_without_samples_are_named_not_called_missing(tmp_path):
    shard = tmp_path / "empty.tar"
    with tarfile.open(shard, "w"):
        pass
    with pytest.raises(PredictError) as err:  # (refused before the model, which does not exist, is looked up)
        predict_to_file("models:/none@champion", [shard], tmp_path / "p.csv",
                        tracking_uri=f"sqlite:///{tmp_path / 'none.db'}")
    assert "no inputs given" not in str(err.value) and str(shard) in str(err.value), err.value
    assert "no images" in str(err.value) and "samples" in str(err.value), err.value


def test_no_inputs_at_all_is_still_told_so(tmp_path):
    with pytest.raises(PredictError, match="no inputs given"):
        predict_to_file("models:/none@champion", [], tmp_path / "p.csv", tracking_uri=f"sqlite:///{tmp_path}/n.db")

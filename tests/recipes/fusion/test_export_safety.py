"""`evaluate --export` and `predict` read safetensors and JSON only: an export folder that holds a file needing
unpickling is refused, naming the file, before anything in it is read (issue 11 item 11)."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.recipes.fusion.export import load_exported_model


@pytest.mark.parametrize("name", ["model.pt", "text_encoder/pytorch_model.bin", "extra.pkl"])
def test_an_export_folder_holding_a_pickle_is_refused_naming_it(tmp_path, name):
    (tmp_path / "model_config.json").write_text(json.dumps({"format": "mmlnb-fusion-export/2"}))
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(UserError, match=name.split("/")[-1]):
        load_exported_model(tmp_path)

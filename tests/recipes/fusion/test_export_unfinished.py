"""An export folder written by a run killed while exporting: model_config.json is written last and whole, so such a
folder has weights but no description (or, copied by hand, a torn one). Both readers (fusion and CLIP) say the
export did not finish, naming the folder and what to run again, instead of a JSON traceback; and `start_export`
removes an old description before new weights are written into the folder."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.files import replace_text, start_export
from mmlnb_dist.recipes.clip.export import load_exported_model as load_clip_export
from mmlnb_dist.recipes.fusion.export import read_export_config

READERS = {"fusion": read_export_config, "clip": load_clip_export}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("description", [None, '{"format": "mmlnb-fusion-export/2", "classes": ["UD", "P'])
def test_an_unfinished_export_is_named_as_such(tmp_path, reader, description):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    if description is not None:
        (folder / "model_config.json").write_text(description)
    with pytest.raises(UserError) as err:
        READERS[reader](folder)
    message = str(err.value)
    assert str(folder) in message and "export did not finish" in message, message
    assert "run.resume=true" in message, message


@pytest.mark.parametrize("reader", sorted(READERS))
def test_an_empty_folder_is_not_an_export(tmp_path, reader):
    with pytest.raises(UserError, match="not found: not a"):
        READERS[reader](tmp_path)


def test_an_export_into_an_old_export_folder_first_removes_the_old_description(tmp_path):
    replace_text(tmp_path / "model_config.json", "{}")
    (tmp_path / "model.safetensors").write_bytes(b"old")
    start_export(tmp_path)
    assert not (tmp_path / "model_config.json").exists()
    with pytest.raises(UserError, match="export did not finish"):
        read_export_config(tmp_path)

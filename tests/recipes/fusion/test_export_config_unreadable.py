"""An export whose model_config.json is cut short (a run killed while writing it) or is no JSON object is refused
naming the file (`UserError`), as a missing one is: it was a bare JSONDecodeError / TypeError traceback from
`evaluate --export` and `register`."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.recipes.fusion.export import read_export_config


@pytest.mark.parametrize("text", ['{"format": "mmlnb-fusion-export/2", "classes": ["UD", "P', "[1, 2]", ""])
def test_an_unreadable_export_description_is_refused_naming_the_file(tmp_path, text):
    (tmp_path / "model_config.json").write_text(text)
    with pytest.raises(UserError) as err:
        read_export_config(tmp_path)
    assert str(tmp_path / "model_config.json") in str(err.value), err.value

"""`--stain-target` given a folder (the one holding the target image): a usage error that says it is a folder, not
'no such file' (the folder is right there)."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.inputs import TilingInputError
from mmlnb_dist.slides.tiler import stain_target


def test_a_folder_as_stain_target_is_named_as_a_folder(tmp_path):
    cfg = load_config(None, ["slides.stain.method=macenko", f"slides.stain.target={tmp_path}"]).slides
    with pytest.raises(TilingInputError) as err:
        stain_target(cfg, {})
    assert "folder" in str(err.value) and "no such file" not in str(err.value)

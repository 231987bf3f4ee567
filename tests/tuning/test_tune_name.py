"""`tune.name` is one folder name, as `run.name` is: the search folder is `<tune.storage_path>/<tune.name>`, and
`.` made it the storage folder itself (every search's trials mixed in it), `..` its parent, and a name holding a
separator nested the search where `tune.resume` and the shared cache defaults then pointed elsewhere."""
from __future__ import annotations

import pytest

from mmlnb_dist.config.tune import TuneConfig


@pytest.mark.parametrize("name", [".", "..", "sweeps/lr", "..\\lr", "../lr"])
def test_a_search_name_that_is_not_one_folder_name_is_refused(name):
    """The error names the key and what to do instead."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"(?s)not one folder name.*tune\.storage_path"):
        TuneConfig(name=name)


@pytest.mark.parametrize("name", ["search", "lr.sweep-2", "..lr", "a..b"])
def test_one_folder_name_is_taken_as_given(name):
    """Dots inside a name are fine."""
    assert TuneConfig(name=name).name == name

"""`data.classes: [1, 2, 3]` (tumour grades) or `[UD, no, yes]`: YAML reads the items as numbers / booleans, and the
message was pydantic's "data.classes.0: Input should be a valid string (got 1)" once per item, not saying that
class names are text to be quoted. Now one line names the items as YAML read them and how to quote them."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import UserError


@pytest.mark.parametrize("override, item", [("data.classes=[1,2,3]", "1"), ("data.classes=[UD,no,PD]", "False")])
def test_unquoted_numbers_or_booleans_get_a_quoting_hint(override, item):
    with pytest.raises(UserError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert "data.classes" in message and item in message and "quote" in message, message
    assert "Input should be a valid string" not in message, message


def test_a_yaml_file_with_numbers_is_refused_the_same_way(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  classes: [3, 4, 5]\n")
    with pytest.raises(UserError, match=r"data\.classes.*quote"):
        load_config(path, [])


def test_quoted_numbers_are_class_names():
    assert load_config(None, ["data.classes=['1','2','3']"]).data.classes == ["1", "2", "3"]


def test_the_command_line_form_the_message_suggests_works():
    assert load_config(None, ["data.classes=1,2,3"]).data.classes == ["1", "2", "3"]
    assert load_config(None, ["data.classes=UD,yes,no"]).data.classes == ["UD", "yes", "no"]

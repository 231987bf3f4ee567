"""`data.classes` names the classes in index order: an empty list (every label unknown, nothing to predict) and
a class listed twice (a class no sample can have) are refused when the config is read, naming the key."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import UserError


def test_an_empty_class_list_is_refused_naming_the_key():
    with pytest.raises(UserError, match=r"data\.classes.*no class listed"):
        load_config(None, ["data.classes=[]"])


def test_a_class_listed_twice_is_refused_naming_it():
    with pytest.raises(UserError, match=r"data\.classes.*'PD' is listed twice"):
        load_config(None, ["data.classes=[UD,PD,PD]"])


def test_distinct_classes_are_kept_in_order():
    assert load_config(None, ["data.classes=[b,a]"]).data.classes == ["b", "a"]


@pytest.mark.parametrize("item, reason", [
    ('""', "is empty"),
    ("a/b", "path separator"),
    ("..", "not a folder name"),
    ('" PD"', "starts or ends with a space"),
])
def test_a_class_name_no_folder_or_label_can_hold_is_refused_naming_it(item, reason):
    # a class is a folder (data synth, shards build --input DIR) and a stripped label cell: such a name lost or
    # misplaced every sample of its class
    with pytest.raises(UserError, match=rf"data\.classes.*{reason}"):
        load_config(None, [f"data.classes=[UD,{item},D]"])

"""`evaluate --export` on a shard set of other classes was refused with
"the model's classes [...] differ from the shards' [...] (shards/x)": it did not say which setting chose those
shards, why that is refused, nor what to run instead. The refusal now names the export, data.shards and the way
out. (The same classes in another order are remapped by name: test_evaluate_export_class_order.py.)"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.recipes.fusion.evaluate import _evaluate

from support.shards import make_shard_set


def test_an_export_of_other_classes_is_refused_naming_the_setting_and_the_remedy(tmp_path):
    shards = make_shard_set(tmp_path, per_class=3, max_per_shard=5, val_fraction=0.34)
    cfg = SimpleNamespace(data=SimpleNamespace(shards=str(shards)))
    with pytest.raises(UserError) as err:
        _evaluate(cfg, None, ["D", "PD", "GN"], "val", 24, None, None)
    message = str(err.value)
    assert "differ from the shards'" in message and f"data.shards {shards}" in message, message
    assert "logit" in message and "data.shards=" in message, message

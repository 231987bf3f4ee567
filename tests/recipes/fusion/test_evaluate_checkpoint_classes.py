"""`evaluate --checkpoint` checks the classes the run was trained on against the evaluated shard set from what
the run recorded when it trained (`<run>/datasets.json`), not from its shard set as that folder reads now: a set
deleted since (nothing was checked) or rebuilt in place with the classes in another order (it then agreed with
itself) let a model trained on [D, PD, UD] be scored on a [UD, PD, D] set, its labels read as other classes."""
from __future__ import annotations

import json
import shutil

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.recipes.fusion.evaluate import trained_model_config
from support.fusion import make_shards, tiny_config

TRAINED_ON = ["D", "PD", "UD"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("s"), n=12, size=16)  # classes UD, PD, D


def _run_folder(tmp_path, trained_shards: str, classes=TRAINED_ON):
    run = tmp_path / "runs" / "r1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(f"data: {{shards: {trained_shards}}}\n")
    spec = {"name": "shards:train", "source": trained_shards, "context": "train", "profile": {"classes": classes}}
    (run / "datasets.json").write_text(json.dumps({"train": [spec]}))
    return run / "checkpoints"


def test_a_run_whose_shard_set_is_gone_is_checked_by_its_recorded_classes(shards, tmp_path):
    ckpt = _run_folder(tmp_path, str(tmp_path / "deleted-shards"))
    with pytest.raises(UserError, match=r"trained on the classes \['D', 'PD', 'UD'\]") as err:
        trained_model_config(tiny_config(shards, tmp_path / "runs", "ev"), ckpt)
    assert "['UD', 'PD', 'D']" in str(err.value)


def test_a_shard_set_rebuilt_in_place_is_checked_by_the_recorded_classes(shards, tmp_path):
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(shards, rebuilt)  # now [UD, PD, D] where the run read [D, PD, UD]
    with pytest.raises(UserError, match=r"trained on the classes \['D', 'PD', 'UD'\]"):
        trained_model_config(tiny_config(rebuilt, tmp_path / "runs", "ev"), _run_folder(tmp_path, str(rebuilt)))


def test_the_same_classes_pass(shards, tmp_path):
    ckpt = _run_folder(tmp_path, str(tmp_path / "deleted-shards"), classes=["UD", "PD", "D"])
    assert trained_model_config(tiny_config(shards, tmp_path / "runs", "ev"), ckpt).data.shards == shards

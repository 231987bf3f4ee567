"""`evaluate --checkpoint` of weights that do not fit the model the config builds (a checkpoint copied away from its
run, trained on 2 classes, evaluated on a 3-class shard set; or other `fusion.model` settings) is refused naming
what does not fit: it was PyTorch's `load_state_dict` traceback ("size mismatch for head...")."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.recipes.fusion import evaluate as evaluate_mod
from mmlnb_dist.recipes.fusion.model import build_classifier
from support.fusion import make_shards, tiny_config


def test_a_checkpoint_of_another_class_count_is_refused_naming_it(tmp_path, monkeypatch):
    shards = make_shards(tmp_path, n=12, size=16)  # 3 classes
    cfg = tiny_config(shards, tmp_path / "runs", "ev", ["data.loader.image_size=16"])
    model_cfg = cfg.fusion.model.model_copy(deep=True)
    model_cfg.image_encoder.pretrained = False
    state = build_classifier(model_cfg, 2).state_dict()  # trained on 2 classes
    monkeypatch.setattr(evaluate_mod, "fp32_state_dict_from_checkpoint", lambda *_: ("epoch-0001", state))
    ckpt = tmp_path / "copied" / "checkpoints"  # away from its run folder: no config.yaml to check against
    ckpt.mkdir(parents=True)
    with pytest.raises(UserError, match=r"\(epoch-0001\) do not fit") as err:
        evaluate_mod.evaluate_checkpoint(cfg, ckpt, "val")
    assert "3 classes" in str(err.value) and "size mismatch" in str(err.value)

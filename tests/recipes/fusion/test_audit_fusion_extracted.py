"""Mutation audit of `recipes.fusion.extracted` (`fusion.image_features`): the refusals `check_config` makes before
any work, each naming what to change (a text-only model, the first phase training the image encoder, a folder
that does not say whether its encoder was pretrained, features of another precision or shard set), checked on a
hand-written feature folder record; and the loader preprocess that serves each key its own features."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.core.provenance import ProvenanceError
from mmlnb_dist.features import FeaturesError
from mmlnb_dist.models.encoders import image_normalisation
from mmlnb_dist.recipes.fusion.extracted import ExtractedImageFeatures, check_config

from support.fusion import tiny_config

FROZEN_PHASES = ("fusion.curriculum.phases=[{start_epoch: 0, train_image_encoder: false, train_text_encoder: false},"
                 " {start_epoch: 1, train_image_encoder: false}]")


def _folder(tmp_path: Path, *, pretrained=True, precision="fp32", digest="sha-of-shards") -> Path:
    """A finished extraction's record as `features extract` writes it (what check_config reads of it)."""
    folder = tmp_path / "feats"
    folder.mkdir()
    norm = image_normalisation("tiny")
    encoder = {"name": "tiny", **({"pretrained": False} if pretrained else {})}
    identity = {"encoder": encoder, "precision": precision, "shards": {"manifest_sha256": digest},
                "transform": {"image_size": 64, "mean": list(norm["mean"]), "std": list(norm["std"])}}
    (folder / "provenance.json").write_text(json.dumps({"record": {"identity": identity}}))
    (folder / "index.json").write_text(json.dumps({"files": []}))
    return folder


def _shards(digest="sha-of-shards"):
    return SimpleNamespace(root=Path("/shards"), digest=digest, manifest={})


def _cfg(tmp_path, folder, *extra):
    return tiny_config(Path("/shards"), tmp_path / "runs", "x", ["fusion.model.image_encoder.name=tiny",
                                                                  "fusion.model.image_encoder.pretrained=false",
                                                                  FROZEN_PHASES, f"fusion.image_features={folder}",
                                                                  *extra])


def test_a_fitting_folder_passes(tmp_path):
    check_config(_cfg(tmp_path, _folder(tmp_path)), _shards())


def test_a_text_only_model_has_no_image_branch_to_feed(tmp_path):
    with pytest.raises(ConfigError, match="text_only has no image branch"):
        check_config(_cfg(tmp_path, _folder(tmp_path), "fusion.model.mode=text_only"), _shards())


def test_the_first_phase_training_the_image_encoder_is_refused_naming_it(tmp_path):
    phases = "fusion.curriculum.phases=[{start_epoch: 0, train_image_encoder: true}]"
    with pytest.raises(ConfigError, match=r"fusion\.curriculum\.phases\[0\] \(start_epoch 0\) trains it"):
        check_config(_cfg(tmp_path, _folder(tmp_path), phases), _shards())


def test_a_folder_that_does_not_say_whether_its_encoder_was_pretrained_is_refused(tmp_path):
    with pytest.raises(FeaturesError, match="pretrained or random"):
        check_config(_cfg(tmp_path, _folder(tmp_path, pretrained=False)), _shards())


def test_features_of_random_weights_for_a_pretrained_encoder_are_refused_before_any_work(tmp_path):
    """The folder's features come from random weights; the config asks for the pretrained encoder (or its own
    weights_path): other numbers. Refused here (`check`, `config validate`), not only once setup built it."""
    for setting in ("fusion.model.image_encoder.pretrained=true",
                    f"fusion.model.image_encoder.weights_path={tmp_path / 'own.pt'}"):
        with pytest.raises(ProvenanceError, match=r"encoder\.pretrained: False -> True"):
            check_config(_cfg(tmp_path, _folder(tmp_path) if setting.endswith("true") else tmp_path / "feats",
                              setting), _shards())


def test_features_of_another_precision_are_refused(tmp_path):
    with pytest.raises(FeaturesError, match="computed in bf16"):
        check_config(_cfg(tmp_path, _folder(tmp_path, precision="bf16")), _shards())


def test_features_of_another_shard_set_are_refused(tmp_path):
    with pytest.raises(FeaturesError, match="another shard set"):
        check_config(_cfg(tmp_path, _folder(tmp_path)), _shards(digest="sha-of-other-shards"))


def test_a_missing_folder_is_named_with_the_key(tmp_path):
    with pytest.raises(FeaturesError, match=r"^fusion\.image_features: .*no extracted features"):
        check_config(_cfg(tmp_path, tmp_path / "nowhere"), _shards())


def test_each_key_gets_its_own_features_and_its_description_and_a_key_without_features_is_a_bad_sample():
    table = {"a": [1.0, 2.0], "b": np.array([3.0, 4.0], dtype=np.float64)}
    pre = ExtractedImageFeatures(table, ["UD", "PD", "D"])
    got = pre.decode({"__key__": "b", "cls": b"2", "txt": b"dense neuroblasts"}, None)
    assert got["image_features"].dtype == np.float32 and got["image_features"].tolist() == [3.0, 4.0]
    assert got["label"] == 2 and got["text"] == "dense neuroblasts"
    with pytest.raises(ValueError, match="no extracted image features"):
        pre.decode({"__key__": "z", "cls": b"0"}, None)

"""`config validate` (and the pipeline's start, which runs the same check) refuses a clip config whose encoder
names no known encoder: `demo --recipe clip-multilabel clip.model.image_encoder=nosuch` ran synth and shards
before train refused the name, and `config validate` said ok."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import main

PROFILE = "launch/profiles/clip-demo.yaml"


@pytest.mark.parametrize("overrides, says", [
    (["clip.model.image_encoder=nosuch"], "clip.model.image_encoder"),
    (["clip.model.image_encoder=efficientnet-lite0"], "did you mean 'efficientnet_lite0'"),
])
def test_an_unknown_image_encoder_is_refused_by_config_validate(capsys, overrides, says):
    code = main(["config", "validate", "--config", PROFILE, *overrides])
    err = capsys.readouterr().err
    assert code == 2 and says in err, err


def test_an_unread_image_encoder_name_is_not_checked(capsys):
    """text_only builds no image branch: its image_encoder setting is never read, so any name passes."""
    assert main(["config", "validate", "--config", PROFILE, "clip.model.fusion=text_only",
                 "clip.model.image_encoder=nosuch"]) == 0, capsys.readouterr().err

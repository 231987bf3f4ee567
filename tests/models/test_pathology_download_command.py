"""A missing pathology model said "download it" with no command (the text encoders give `huggingface-cli download
REPO`): both now end with the one hint `encoders_base.hub_download_hint` writes, naming the repository."""
from __future__ import annotations

import pytest

from mmlnb_dist.models.encoders_base import hub_download_hint
from mmlnb_dist.models.pathology import PATHOLOGY_MODELS, access_message


@pytest.mark.parametrize("name", ["plip", "uni"])
def test_a_missing_pathology_model_gives_the_download_command(name):
    entry = PATHOLOGY_MODELS[name]
    msg = access_message(entry, OSError("not cached"))
    assert f"`huggingface-cli download {entry.repo_id}`" in msg and hub_download_hint(entry.repo_id) in msg, msg
    assert ("request access" in msg) == entry.gated and "model.image_encoder.weights_path" in msg

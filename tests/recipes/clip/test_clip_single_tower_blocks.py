"""A single-tower run (text_only, image_only) unfreezes blocks of the tower it runs only: an open_clip model whose
UNUSED tower has no blocks (a ResNet image tower under text_only) was refused for `unfreeze_blocks` > 0, at
`config validate` and again when the towers were built."""
from __future__ import annotations

import pytest
from torch import nn

from mmlnb_dist.cli import main
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.clip.blocks import unfreeze_last_blocks

PROFILE = "launch/profiles/clip-demo.yaml"
CLIP_TOWERS = ["clip.model.image_encoder=clip", "clip.model.text_encoder=clip", "clip.model.towers.unfreeze_blocks=1"]


class _ResNetImageTowers(nn.Module):
    """Towers whose image side has no transformer blocks (open_clip's ResNet) and a 2-block text side."""
    name = "open_clip:RN50"

    def __init__(self):
        super().__init__()
        self.clip = nn.ModuleDict({"visual": nn.Linear(2, 2), "text": nn.ModuleList([nn.Linear(2, 2)] * 1)})
        self.text = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
        self.clip["text"] = self.text

    @property
    def image_blocks(self):
        raise ConfigError("clip.model.towers.name: 'open_clip:RN50' has a ResNet image tower")

    @property
    def text_blocks(self):
        return self.text


def test_text_only_unfreezes_the_text_towers_blocks_without_reading_the_image_towers():
    towers = _ResNetImageTowers()
    unfreeze_last_blocks(towers, 1, "clip.model.towers.unfreeze_blocks", sides=("text",))
    assert [p.requires_grad for p in towers.text[1].parameters()] == [True, True]
    assert not any(p.requires_grad for p in towers.text[0].parameters())
    with pytest.raises(ConfigError, match="ResNet image tower"):  # a run that uses the image tower is refused
        unfreeze_last_blocks(towers, 1, "clip.model.towers.unfreeze_blocks")


def test_config_validate_checks_only_the_towers_the_run_uses(capsys):
    resnet = ["clip.model.towers.name=open_clip:RN50", *CLIP_TOWERS]
    assert main(["config", "validate", "--config", PROFILE, *resnet, "clip.model.fusion=text_only"]) == 0, \
        capsys.readouterr().err
    assert main(["config", "validate", "--config", PROFILE, *resnet, "clip.model.fusion=image_only"]) == 2
    assert "ResNet image tower" in capsys.readouterr().err


def test_zero_shot_ignores_unfreeze_blocks_on_tiny_towers_as_on_open_clip_ones(capsys):
    """Zero-shot trains nothing and builds its towers frozen whatever unfreeze_blocks says (open_clip ResNets
    pass): the tiny towers' block count refused it all the same."""
    zero_shot = ["clip.model.fusion=zero_shot", *CLIP_TOWERS[:2], "clip.model.towers.name=tiny",
                 "clip.model.towers.unfreeze_blocks=9"]
    assert main(["config", "validate", "--config", PROFILE, *zero_shot]) == 0, capsys.readouterr().err
    assert main(["config", "validate", "--config", PROFILE, *zero_shot, "clip.model.fusion=concat"]) == 2
    assert "clip.model.towers.tiny.layers=4" in capsys.readouterr().err

"""Selective unfreezing shared by both tower kinds (transformers CLIP in towers.py, open_clip in openclip_towers.py)."""
from __future__ import annotations

from torch import nn

from ...core.errors import ConfigError


def unfreeze_last_blocks(towers: nn.Module, n: int, key: str) -> None:
    """Freeze all of `towers.clip`, then let the last `n` blocks of `towers.image_blocks` and `towers.text_blocks`
    train (both tower kinds: transformers CLIP and open_clip); more blocks than a tower has is a ConfigError.
    `n=0` reads no blocks: towers without transformer blocks (open_clip's ResNet, timm or Hugging Face towers,
    whose `*_blocks` raise) run frozen under the head."""
    if n:
        for tower, blocks in (("image", towers.image_blocks), ("text", towers.text_blocks)):
            if n > len(blocks):
                raise ConfigError(f"{key}: {n} blocks asked, but the {tower} tower of '{towers.name}' has only "
                                  f"{len(blocks)}; choose 0..{len(blocks)}")
    towers.clip.requires_grad_(False)
    if n:
        for blocks in (towers.image_blocks, towers.text_blocks):
            for block in blocks[len(blocks) - n:]:
                block.requires_grad_(True)

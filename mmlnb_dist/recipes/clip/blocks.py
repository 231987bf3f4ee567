"""What the text and image sides share (transformers CLIP in towers.py, open_clip in openclip_towers.py, the BERT
branch in branches.py): selective unfreezing, and the warning about captions cut at the token limit."""
from __future__ import annotations

import logging
from typing import List, Sequence, Tuple

import torch
from torch import nn

from ...core.errors import ConfigError


def unfreeze_last_blocks(towers: nn.Module, n: int, key: str,
                         sides: Tuple[str, ...] = ("image", "text")) -> None:
    """Freeze all of `towers.clip`, then let the last `n` blocks of `towers.image_blocks` and `towers.text_blocks`
    train (both tower kinds: transformers CLIP and open_clip); more blocks than a tower has is a ConfigError.
    `n=0` reads no blocks: towers without transformer blocks (open_clip's ResNet, timm or Hugging Face towers,
    whose `*_blocks` raise) run frozen under the head. Only the towers of `sides` are read: a single-tower run
    (text_only on a ResNet image tower) never runs the other one, whose lack of blocks is no reason to refuse."""
    if n:
        for tower in sides:
            blocks = getattr(towers, f"{tower}_blocks")
            if n > len(blocks):
                raise ConfigError(f"{key}: {n} blocks asked, but the {tower} tower of '{towers.name}' has only "
                                  f"{len(blocks)}; choose 0..{len(blocks)}")
    towers.clip.requires_grad_(False)
    if n:
        for tower in sides:
            blocks = getattr(towers, f"{tower}_blocks")
            for block in blocks[len(blocks) - n:]:
                block.requires_grad_(True)


def warn_cut_captions(log: logging.Logger, cut: List[int], batch: int, max_length: int, limit: str) -> None:
    """The one warning (per towers) that `cut` captions of a batch of `batch` (their token counts) were cut to
    `max_length` (`limit` names where it is set): the model would otherwise see their first tokens only without a
    word. Both tower kinds and the BERT branch say it in the same words."""
    log.warning("%d of %d captions in a batch are longer than %s %d tokens (the longest %d tokens) and are cut to "
                "it; the text tower sees only their first %d tokens. Raise max_length (up to the text tower's "
                "position table) or shorten the captions (reported once)",
                len(cut), batch, limit, max_length, max(cut), max_length)


def hf_cut_lengths(tokenizer, texts: Sequence[str], mask: torch.Tensor, max_length: int) -> List[int]:
    """Token counts of the captions a Hugging Face tokenizer cut to `max_length` (`mask`: the attention mask it
    gave). Only rows that fill max_length are re-tokenized, uncut, to tell cut from fit."""
    full = [i for i, n in enumerate(mask.sum(dim=1).tolist()) if n >= max_length]
    if not full:
        return []
    lengths = [len(ids) for ids in tokenizer([texts[i] for i in full])["input_ids"]]
    return [n for n in lengths if n > max_length]

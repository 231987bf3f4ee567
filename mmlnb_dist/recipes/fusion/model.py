"""The dual-branch classifier, composed of an image encoder, a text encoder, a fusion block and two heads.

    logits       = Linear(Dropout(ReLU(F)))    the fused head (authors: ReLU -> Dropout(0.3) -> Linear)
    image_logits = Linear(I)                   the image-only head used by the curriculum loss

The image-only head is a real classifier on I: the authors' code applied cross-entropy to the raw 512-d VGG
features as if they were logits. Either encoder may be given pre-computed features instead of inputs (the
frozen-feature cache). The model knows nothing of ranks, devices or DeepSpeed.
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Optional

import torch
from torch import nn

from ...models.encoders import ImageEncoder, TextEncoder, build_image_encoder, build_text_encoder
from ...models.encoders_base import settings_named
from ...models.fusion_blocks import build_fusion
from .config import FusionModelConfig

TWO_BRANCH_MODES = ("prmf", "concat", "sum", "fixed_alpha")


class FusionClassifier(nn.Module):
    def __init__(self, image_encoder: Optional[ImageEncoder], text_encoder: Optional[TextEncoder],
                 fusion: FusionModelConfig, num_classes: int):
        super().__init__()
        mode = fusion.mode
        if mode != "text_only" and image_encoder is None:
            raise ValueError(f"fusion mode {mode!r} needs an image encoder")
        if mode != "image_only" and text_encoder is None:
            raise ValueError(f"fusion mode {mode!r} needs a text encoder")
        # Single-branch ablations do not build the unused encoder at all: nothing to freeze, nothing to run.
        self.image_encoder = image_encoder if mode != "text_only" else None
        self.text_encoder = text_encoder if mode != "image_only" else None
        self.mode = mode
        self.num_classes = num_classes
        image_dim = self.image_encoder.out_dim if self.image_encoder is not None else 0
        text_dim = self.text_encoder.out_dim if self.text_encoder is not None else 0
        self.fusion = build_fusion(mode, image_dim, text_dim, confidence=fusion.confidence,
                                   confidence_hidden=fusion.confidence_hidden, fixed_alpha=fusion.fixed_alpha)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(fusion.dropout), nn.Linear(self.fusion.out_dim, num_classes))
        # The curriculum's auxiliary image-only loss only means something when a second branch exists.
        self.image_head = nn.Linear(image_dim, num_classes) if mode in TWO_BRANCH_MODES else None
        self.image_trainable = self.image_encoder is not None
        self.text_trainable = self.text_encoder is not None
        self.channels_last = False

    # -- speed levers (same results, other kernels) -------------------------------------------------------

    def speed_up(self, channels_last: bool = False, compile: bool = False) -> "FusionClassifier":
        """Channels-last layout for the image encoder (its weights now, its inputs at every call) and/or
        `torch.compile` of the encoders, in place (`nn.Module.compile`), so state-dict names do not change."""
        if channels_last and self.image_encoder is not None:
            self.image_encoder.to(memory_format=torch.channels_last)
            self.channels_last = True
        if compile:
            for enc in (self.image_encoder, self.text_encoder):
                if enc is not None:
                    enc.compile()
        return self

    # -- freezing ----------------------------------------------------------------------------------------

    def set_trainable(self, image_encoder: bool, text_encoder: bool) -> None:
        """Freeze or unfreeze the encoders (heads and fusion always train). Frozen encoders run in eval mode
        (no dropout, fixed batch-norm statistics) so that their features are a pure function of the input."""
        self.image_trainable = bool(image_encoder) and self.image_encoder is not None
        self.text_trainable = bool(text_encoder) and self.text_encoder is not None
        for enc, on in ((self.image_encoder, self.image_trainable), (self.text_encoder, self.text_trainable)):
            if enc is not None:
                enc.requires_grad_(on)
        self.train(self.training)

    def train(self, mode: bool = True) -> "FusionClassifier":
        super().train(mode)
        if self.image_encoder is not None and not self.image_trainable:
            self.image_encoder.eval()
        if self.text_encoder is not None and not self.text_trainable:
            self.text_encoder.eval()
        return self

    def param_groups(self) -> List[Dict]:
        """Optimizer parameter groups by part, named so the schedule can freeze a whole encoder (lr exactly 0)."""
        groups = []
        if self.image_encoder is not None:
            groups.append({"name": "image_encoder", "params": list(self.image_encoder.parameters())})
        if self.text_encoder is not None:
            groups.append({"name": "text_encoder", "params": list(self.text_encoder.parameters())})
        heads = list(self.fusion.parameters()) + list(self.head.parameters())
        if self.image_head is not None:
            heads += list(self.image_head.parameters())
        groups.append({"name": "heads", "params": heads})
        return groups

    # -- forward -----------------------------------------------------------------------------------------

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        ctx = torch.no_grad() if not self.image_trainable else contextlib.nullcontext()
        if self.channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        with ctx:
            return self.image_encoder(pixel_values)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ctx = torch.no_grad() if not self.text_trainable else contextlib.nullcontext()
        with ctx:
            return self.text_encoder(input_ids, attention_mask)

    def forward(self, pixel_values: Optional[torch.Tensor] = None, input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None, image_features: Optional[torch.Tensor] = None,
                text_features: Optional[torch.Tensor] = None) -> Dict[str, Optional[torch.Tensor]]:
        dtype = self.head[-1].weight.dtype
        image = text = None
        if self.image_encoder is not None:
            image = image_features if image_features is not None else self.encode_image(pixel_values)
            image = image.to(dtype)
        if self.text_encoder is not None:
            text = text_features if text_features is not None else self.encode_text(input_ids, attention_mask)
            text = text.to(dtype)
        fused, alpha = self.fusion(image, text)
        return {
            "logits": self.head(fused),
            "image_logits": self.image_head(image) if self.image_head is not None else None,
            "alpha": alpha,
        }


def build_classifier(cfg: FusionModelConfig, num_classes: int) -> FusionClassifier:
    """Build encoders from the registry and compose the classifier (seed the RNG first for reproducibility)."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    mode = cfg.mode
    with settings_named(ENCODER_SETTINGS):
        image = build_image_encoder(cfg.image_encoder) if mode != "text_only" else None
        text = build_text_encoder(cfg.text_encoder) if mode != "image_only" else None
    return FusionClassifier(image, text, cfg, num_classes)


ENCODER_SETTINGS = {"model.image_encoder": "fusion.model.image_encoder",
                    "model.text_encoder": "fusion.model.text_encoder"}
"""Where the fusion config keeps the encoder settings that `models` errors name (`settings_named`)."""

"""The multi-label classifier: CLIP towers, a fusion of their embeddings, an MLP head (one logit per label).

    logits = head(concat(image_embed, text_embed))     fusion concat (the seed's), or image + text (sum), or
                                                        one tower alone (image_only / text_only baselines)

The model knows nothing of ranks, devices or DeepSpeed. Towers whose blocks are all frozen run without
gradients (nothing to train there, and no activations to keep).
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Optional

import torch
from torch import nn

from .config import ClipModelConfig
from .towers import ClipTowers, build_towers


def mlp_head(in_dim: int, widths: List[int], out_dim: int, dropout: float) -> nn.Sequential:
    layers: List[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ClipMultiLabel(nn.Module):
    def __init__(self, towers: ClipTowers, cfg: ClipModelConfig, num_labels: int):
        super().__init__()
        self.towers = towers
        self.fusion = cfg.fusion
        self.num_labels = num_labels
        width = 2 * towers.embed_dim if cfg.fusion == "concat" else towers.embed_dim
        self.head = mlp_head(width, list(cfg.head_widths), num_labels, cfg.head_dropout)

    @property
    def uses_image(self) -> bool:
        return self.fusion != "text_only"

    @property
    def uses_text(self) -> bool:
        return self.fusion != "image_only"

    def param_groups(self, *, tower_lr: float, head_lr: float) -> List[Dict]:
        """Optimizer groups with their own peak lr: the unfrozen tower blocks, and the head. Frozen parameters
        stay out of the optimizer (they never change; no Adam state for them)."""
        towers = [p for p in self.towers.parameters() if p.requires_grad]
        groups = [{"name": "towers", "params": towers, "lr": tower_lr}] if towers else []
        return groups + [{"name": "head", "params": list(self.head.parameters()), "lr": head_lr}]

    def _grad(self, blocks: nn.ModuleList):
        trains = any(p.requires_grad for p in blocks.parameters())
        return contextlib.nullcontext() if trains else torch.no_grad()

    def embeddings(self, pixel_values: Optional[torch.Tensor] = None, input_ids: Optional[torch.Tensor] = None,
                   attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The fused embedding the head reads."""
        image = text = None
        if self.uses_image:
            with self._grad(self.towers.image_blocks):
                image = self.towers.encode_image(pixel_values)
        if self.uses_text:
            with self._grad(self.towers.text_blocks):
                text = self.towers.encode_text(input_ids, attention_mask)
        if self.fusion == "concat":
            return torch.cat([image, text], dim=-1)
        if self.fusion == "sum":
            return image + text
        return image if image is not None else text

    def inputs(self, pixel_values: Optional[torch.Tensor], texts: Optional[List[str]],
               device: Optional[torch.device] = None) -> Dict[str, torch.Tensor]:
        """The keyword arguments of `forward` for a batch of normalised images and captions: only what the model
        uses (a text-only model gets no pixels), tokenised by its own tokenizer, on `device`."""
        device = device or next(self.parameters()).device
        out: Dict[str, torch.Tensor] = {}
        if self.uses_image:
            out["pixel_values"] = pixel_values.to(device, next(self.parameters()).dtype)
        if self.uses_text:
            out.update({k: v.to(device) for k, v in self.towers.tokenize(list(texts)).items()})
        return out

    def forward(self, pixel_values: Optional[torch.Tensor] = None, input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        fused = self.embeddings(pixel_values, input_ids, attention_mask)
        return self.head(fused.to(self.head[0].weight.dtype))


def build_model(cfg: ClipModelConfig, num_labels: int, image_size: int) -> ClipMultiLabel:
    """Towers (unfreezing applied) plus head; seed the RNG first for identical weights on every rank."""
    if num_labels < 2:
        raise ValueError(f"need at least 2 labels, got {num_labels}")
    return ClipMultiLabel(build_towers(cfg.towers, image_size), cfg, num_labels)

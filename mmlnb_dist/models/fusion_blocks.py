"""Fusion blocks shared by the recipes: PRMF (MMLNB's confidence-weighted fusion) and its Table 2 ablations.

The fusion recipe fuses its image and text encoders' features with them; the CLIP recipe reuses PRMF on the two
CLIP embeddings (`clip.model.fusion=prmf`). Every fusion maps image features I [B, d_i] and text features T [B, d_t] to fused features F [B, out_dim] and
an optional per-sample text weight alpha [B, 1] (None when the fusion has none).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

FusionOutput = Tuple[torch.Tensor, Optional[torch.Tensor]]


class PRMF(nn.Module):
    """Pathology-aware robust multimodal fusion.

        I' = W_proj I + b                                     (image features to the text width)
        alpha = sigmoid(W_conf [I; T] + b_conf)               confidence="paper"  (one linear layer)
        alpha = sigmoid(W2 relu(W1 [T; I] + b1) + b2)         confidence="authors" (their public code)
        F = alpha * T + (1 - alpha) * I'

    The two confidence forms also differ in concatenation order, as in their sources ([I;T] in the paper's
    equation, [T;I] in the authors' code); the order only permutes the weight columns.
    """

    def __init__(self, image_dim: int, text_dim: int, confidence: str = "paper", hidden: int = 256):
        super().__init__()
        if confidence not in ("paper", "authors"):
            raise ValueError(f"confidence must be 'paper' or 'authors', got {confidence!r}")
        self.confidence_form = confidence
        self.proj = nn.Linear(image_dim, text_dim)
        if confidence == "paper":
            self.confidence = nn.Sequential(nn.Linear(image_dim + text_dim, 1), nn.Sigmoid())
        else:
            self.confidence = nn.Sequential(
                nn.Linear(text_dim + image_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid()
            )
        self.out_dim = text_dim

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> FusionOutput:
        pair = torch.cat([image, text], -1) if self.confidence_form == "paper" else torch.cat([text, image], -1)
        alpha = self.confidence(pair)
        fused = alpha * text + (1.0 - alpha) * self.proj(image)
        return fused, alpha


class FixedAlphaFusion(nn.Module):
    """F = a T + (1 - a) I' with a constant a (ablation: no confidence network). a=0.5 is a plain average."""

    def __init__(self, image_dim: int, text_dim: int, alpha: float):
        super().__init__()
        self.proj = nn.Linear(image_dim, text_dim)
        self.alpha = float(alpha)
        self.out_dim = text_dim

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> FusionOutput:
        alpha = torch.full((image.shape[0], 1), self.alpha, dtype=text.dtype, device=text.device)
        return alpha * text + (1.0 - alpha) * self.proj(image), alpha


class SumFusion(nn.Module):
    """F = T + I' (ablation: plain sum)."""

    def __init__(self, image_dim: int, text_dim: int):
        super().__init__()
        self.proj = nn.Linear(image_dim, text_dim)
        self.out_dim = text_dim

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> FusionOutput:
        return text + self.proj(image), None


class ConcatFusion(nn.Module):
    """F = [T; I] (ablation: concatenation, the CLIP system's choice)."""

    def __init__(self, image_dim: int, text_dim: int):
        super().__init__()
        self.out_dim = image_dim + text_dim

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> FusionOutput:
        return torch.cat([text, image], -1), None


class SingleBranch(nn.Module):
    """F = I (image_only) or F = T (text_only): one branch, nothing to fuse."""

    def __init__(self, branch: str, dim: int):
        super().__init__()
        self.branch = branch
        self.out_dim = dim

    def forward(self, image: Optional[torch.Tensor], text: Optional[torch.Tensor]) -> FusionOutput:
        return (image if self.branch == "image" else text), None


def build_fusion(mode: str, image_dim: int, text_dim: int, *, confidence: str = "paper",
                 confidence_hidden: int = 256, fixed_alpha: float = 0.5) -> nn.Module:
    """The fusion block `mode` names (prmf, fixed_alpha, sum, concat, image_only, text_only)."""
    if mode == "prmf":
        return PRMF(image_dim, text_dim, confidence, confidence_hidden)
    if mode == "fixed_alpha":
        return FixedAlphaFusion(image_dim, text_dim, fixed_alpha)
    if mode == "sum":
        return SumFusion(image_dim, text_dim)
    if mode == "concat":
        return ConcatFusion(image_dim, text_dim)
    if mode == "image_only":
        return SingleBranch("image", image_dim)
    if mode == "text_only":
        return SingleBranch("text", text_dim)
    raise ValueError(f"unknown fusion mode {mode!r}")

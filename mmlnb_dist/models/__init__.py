"""Shared model building blocks (used by several recipes): the image and text encoder registries (encoders.py)
and the fusion blocks, PRMF and its ablations (fusion_blocks.py).

Models know no ranks, no data pipeline and no tracking: recipes hand them tensors.
"""
from .encoders import (
    IMAGE_ENCODERS, IMAGENET_MEAN, IMAGENET_STD, EncoderError, ImageEncoder, TextEncoder, build_image_encoder,
    build_text_encoder, module_fingerprint,
)

__all__ = [
    "IMAGE_ENCODERS", "IMAGENET_MEAN", "IMAGENET_STD", "EncoderError", "ImageEncoder", "TextEncoder",
    "build_image_encoder", "build_text_encoder", "module_fingerprint",
]

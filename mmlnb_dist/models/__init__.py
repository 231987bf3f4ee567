"""Shared model building blocks (used by several recipes): the image and text encoder registries (encoders.py,
with the pathology foundation models of pathology.py and the `ImageEncoder` base of encoders_base.py) and the
fusion blocks, PRMF and its ablations (fusion_blocks.py).

Models know no ranks, no data pipeline and no tracking: recipes hand them tensors.
"""
from .encoders import (
    IMAGE_ENCODERS, IMAGENET_MEAN, IMAGENET_STD, PATHOLOGY_MODELS, TEXT_ENCODER_ALIASES, EncoderError, ImageEncoder,
    TextEncoder, build_image_encoder, build_text_encoder, encoder_provenance, image_encoder_licence,
    image_normalisation, module_fingerprint,
)

__all__ = [
    "IMAGE_ENCODERS", "IMAGENET_MEAN", "IMAGENET_STD", "PATHOLOGY_MODELS", "TEXT_ENCODER_ALIASES", "EncoderError",
    "ImageEncoder", "TextEncoder", "build_image_encoder", "build_text_encoder", "encoder_provenance",
    "image_encoder_licence", "image_normalisation", "module_fingerprint",
]

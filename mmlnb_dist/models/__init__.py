"""Models of the fusion stage: encoder registries, the PRMF block and the dual-branch classifier."""
from .classifier import FusionClassifier, build_classifier
from .encoders import (
    IMAGE_ENCODERS, EncoderError, ImageEncoder, TextEncoder, build_image_encoder, build_text_encoder,
    module_fingerprint,
)
from .prmf import PRMF, build_fusion

__all__ = [
    "FusionClassifier", "build_classifier", "IMAGE_ENCODERS", "EncoderError", "ImageEncoder", "TextEncoder",
    "build_image_encoder", "build_text_encoder", "module_fingerprint", "PRMF", "build_fusion",
]

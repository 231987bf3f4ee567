"""mmlnb-dist: distributed multi-GPU training for multi-modal histopathology classification."""

__version__ = "0.1.0"

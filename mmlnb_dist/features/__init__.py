"""Extracted image features: computed once per shard set and encoder, distributed and resumable (extract.py),
stored per shard as safetensors with what made them (store.py), and read back by any recipe whose image encoder
stays frozen (the fusion recipe's `fusion.image_features`).

Below the recipes, above the models and the data layer: it uses `models` (the encoder), `data` (the shard set)
and `core` (ranks, provenance), and knows no recipe.
"""
from .extract import extract_features, extraction_image_size
from .store import (FeaturesError, os_error_of, check_files_present, check_identity, check_precision_fits,
                    check_shards_fit, feature_identity, load_features, read_index, read_record, refuse_mismatch,
                    run_precision)

__all__ = ["extract_features", "extraction_image_size", "FeaturesError", "os_error_of", "check_files_present",
           "check_identity", "check_precision_fits", "check_shards_fit", "feature_identity", "load_features",
           "read_index", "read_record", "refuse_mismatch", "run_precision"]

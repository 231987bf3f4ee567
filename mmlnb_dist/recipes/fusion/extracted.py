"""Training from extracted image features (`fusion.image_features`): the loader reads keys, labels and
descriptions from the shards and takes each sample's image features from a `features extract` folder, so no
image is decoded and the image encoder never runs.

The features stand in for the encoder only if nothing differs: `check_config` (before any work) refuses a config
whose image encoder trains in some phase or whose inputs are augmented, and compares what the folder records with
the config (encoder name, pretrained or random weights, transform, the precision the run's encoder computes in) and
the shard set by its images (`features.check_shards_fit`: a set rebuilt with other descriptions, same keys, splits
and image bytes, reuses them); `check_encoder` (in setup, once the encoder is built) also compares the weights digest. Refusals name every
differing key.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping

import numpy as np

from ...core.errors import ConfigError
from ...data.preprocess import ClassIndexLabel, add_text_and_ids, collate_samples, sample_meta
from ...data.shardset import ShardSet
from ...features import (FeaturesError, check_files_present, check_identity, check_precision_fits, check_shards_fit,
                         feature_identity, load_features, read_record, refuse_mismatch, run_precision)
from ...models.encoders import image_normalisation, module_fingerprint

if TYPE_CHECKING:
    from ...config import Config

KEY = "fusion.image_features"


def _remedy(cfg: "Config") -> str:
    enc = cfg.fusion.model.image_encoder
    size, own = cfg.data.loader.image_size, image_normalisation(enc.name)["input_size"]
    at_own = (f"Train at {enc.name}'s own input size (data.loader.image_size={own}: features extracted without "
              f"--image-size have it), or e" if own and own != size else "E")
    return (f"{at_own}xtract features for this run (`mmlnb-dist features extract --encoder {enc.name} --shards "
            f"{cfg.data.shards} --image-size {size} ...` with the same run.seed and fusion.model.image_encoder "
            f"settings{f'; refused if {enc.name} cannot take {size} px' if own and own != size else ''}) or drop "
            f"{KEY}.")


def check_config(cfg: "Config", shards: ShardSet) -> None:
    """Config-level refusals, before any work: frozen everywhere, no augmentation, a finished folder whose
    encoder name, transform and precision match the config and whose shard set has the images of `shards`."""
    f = cfg.fusion
    if f.model.mode == "text_only":
        raise ConfigError(f"{KEY}: fusion.model.mode text_only has no image branch to feed; drop {KEY}")
    for i, phase in enumerate(f.curriculum.phases):
        if phase.train_image_encoder:
            raise ConfigError(f"{KEY} needs the image encoder frozen in every phase, but fusion.curriculum.phases"
                              f"[{i}] (start_epoch {phase.start_epoch}) trains it; set train_image_encoder: false "
                              f"there, or drop {KEY} to train from images")
    if cfg.data.loader.augment:
        raise ConfigError(f"{KEY}: features are extracted from unaugmented images; set data.loader.augment=false "
                          f"or drop {KEY}")
    folder = Path(f.image_features)
    try:
        check_files_present(folder)
    except FeaturesError as err:
        raise FeaturesError(f"{KEY}: {err}") from None
    enc = f.model.image_encoder
    norm = image_normalisation(enc.name)
    # Pretrained (or own weights_path) against random weights: other numbers, so refused here (`check`, `config
    # validate`) as `build_image_encoder` decides it, not only once setup built the encoder and compared digests.
    expected = {"encoder": {"name": enc.name, "pretrained": bool(enc.pretrained or enc.weights_path)},
                "transform": {"image_size": cfg.data.loader.image_size, "mean": list(norm["mean"]),
                              "std": list(norm["std"])}}
    recorded = read_record(folder)["identity"]
    if "pretrained" not in recorded.get("encoder", {}):  # said here, not as a late "differs" once all is built
        raise FeaturesError(f"{KEY}: {folder} was extracted before feature records said whether the encoder's "
                            f"weights were pretrained or random, which this run must know. {_remedy(cfg)}")
    refuse_mismatch(f"{KEY} {folder}", _subset(recorded, expected), expected, remedy=_remedy(cfg))
    check_precision_fits(folder, run_precision(cfg.distributed))
    check_shards_fit(folder, shards, remedy=_remedy(cfg))


def _subset(record: Mapping[str, Any], like: Mapping[str, Any]) -> Dict[str, Any]:
    """The keys of `record` that `like` has (nested), so that only those are compared."""
    return {k: _subset(record.get(k, {}), v) if isinstance(v, Mapping) else record.get(k)
            for k, v in like.items()}


def check_encoder(cfg: "Config", encoder: Any, shards: ShardSet) -> None:
    """The whole identity, weights digest included, against the encoder this run built (before training). The
    shard set is not compared again: `check_config` did, and the run has held the read locks of the shard set and
    the features folder since (`FusionRecipe.reads`)."""
    digest = module_fingerprint(encoder.name, encoder.body)
    identity = feature_identity(encoder, digest, cfg.data.loader.image_size, shards, run_precision(cfg.distributed))
    check_identity(Path(cfg.fusion.image_features), identity, None,
                   what_uses=f"this run's image encoder ({encoder.name}, weights {digest})", remedy=_remedy(cfg))


class ExtractedImageFeatures:
    """A loader preprocess like `steps.preprocess_for`'s, with `image_features` (float32 [B, D]) instead of
    `image`: label, description, key and slide id come from the shard, the features from the table. A key without
    features (its image was unreadable at extraction) is a bad sample, as it would be when reading images."""

    def __init__(self, table: Mapping[str, Any], classes: List[str], text: bool = True):
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.label = ClassIndexLabel(classes)
        self.text = text

    def decode(self, raw: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
        key = raw["__key__"]
        if key not in self.table:
            raise ValueError(f"no extracted image features (listed as skipped in {KEY})")
        meta = sample_meta(raw)
        return add_text_and_ids({"image_features": self.table[key], "label": self.label(raw, meta)}, raw, meta,
                                self.text)

    def collate(self, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
        return collate_samples(samples)

    def finalize(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        return batch


def extracted_preprocess(cfg: "Config", classes: List[str]) -> ExtractedImageFeatures:
    return ExtractedImageFeatures(load_features(Path(cfg.fusion.image_features)), classes)

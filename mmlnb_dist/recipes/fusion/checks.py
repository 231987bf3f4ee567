"""Checks of a shard set against a fusion config that `FusionRecipe.check` runs before any work: cheap (the
manifest, or at most a few samples of the first train shard), so a run that would train on the wrong numbers
stops with a ConfigError naming the key to change instead of failing or misleading epochs later."""
from __future__ import annotations

import logging
from itertools import islice
from typing import TYPE_CHECKING, List

from ...core.errors import ConfigError
from ...data.reader import iter_shard_samples
from ...data.shardset import ShardSet

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)

PROBE_SAMPLES = 16
"""Samples of the first train shard read when an (older) manifest does not record `has_descriptions`."""


def train_has_descriptions(shards: ShardSet) -> bool:
    """Whether the train samples carry descriptions: the manifest's record, else a look at the first samples."""
    recorded = shards.manifest.get("has_descriptions")
    if recorded is not None:
        return bool(recorded)
    entries = shards.shards("train")
    if not entries:
        return False
    probe = islice(iter_shard_samples(entries[0][0]), PROBE_SAMPLES)
    return any(sample.get("txt", b"").strip() for sample in probe)


def undescribed(shards: ShardSet, splits: List[str]) -> str:
    """How many samples of `splits` carry no description, per split, and the shards holding them ("" when every
    sample has one, or the manifest predates the count): `has_descriptions` says only that some sample has one."""
    missing = {split: shards.num_samples(split) - n for split in splits
               if (n := shards.num_described(split)) is not None and n < shards.num_samples(split)}
    if not missing:
        return ""
    counts = ", ".join(f"{split} {n} of {shards.num_samples(split)}" for split, n in missing.items())
    listing = ", ".join(f"{name} ({n})" for split in missing for name, n in shards.undescribed_shards(split))
    return f"{counts}; shards, samples without: {listing[:400]}"


def check_text_available(cfg: "Config", shards: ShardSet) -> None:
    """A fusion mode with a text branch on shards without descriptions would feed it empty strings."""
    mode = cfg.fusion.model.mode
    if mode == "image_only":
        return
    if train_has_descriptions(shards):
        # `has_descriptions` says some sample has one: a set described in part (a descriptions file that covers
        # some patches) would train the text branch on empty strings for the rest, and score val/test so, without
        # a word
        partly = undescribed(shards, list(shards.manifest["splits"]))
        if partly:
            raise ConfigError(f"fusion.model.mode={mode} uses a text branch, but samples of data.shards "
                              f"{shards.root} carry no description ({partly}): the text branch would read empty "
                              f"text for them. Describe every patch with `mmlnb-dist describe --shards "
                              f"{shards.root}` and train on its output, give the build a description for each "
                              f"patch, or train on images alone with fusion.model.mode=image_only")
        return
    raise ConfigError(f"fusion.model.mode={mode} uses a text branch, but the train samples of data.shards "
                      f"{shards.root} carry no descriptions (no `txt` members): it would train on empty text. "
                      f"Train on images alone with fusion.model.mode=image_only, or write descriptions first "
                      f"with `mmlnb-dist describe --shards {shards.root}` and train on its output")


UNDEFINED_ON_ONE_CLASS = ("auroc", "kappa", "quadratic_kappa")
"""Metrics without meaning on a split holding one class: AUROC is NaN; kappa is NaN (no chance disagreement)
when every prediction is that class too, and at most 0 otherwise."""


def check_best_metric_defined(cfg: "Config", shards: ShardSet) -> None:
    """A val split holding fewer than two classes cannot pick a checkpoint by AUROC or kappa."""
    metric = cfg.train.best_metric
    counts = shards.manifest["splits"].get("val", {}).get("class_counts", {})
    present = sorted(c for c, n in counts.items() if n)
    if metric in UNDEFINED_ON_ONE_CLASS and len(present) < 2:
        raise ConfigError(f"train.best_metric={metric}: the val split of {shards.root} holds only "
                          f"{present or 'no'} class(es), so its {metric} is undefined (NaN) and cannot choose the "
                          f"best checkpoint; pick another metric (e.g. train.best_metric=loss) or rebuild the "
                          f"shards with more val slides (data.build.val_fraction)")
    absent = [c for c in shards.classes if c not in present]
    if absent:
        log.warning("the val split of %s has no samples of %s: those classes are left out of balanced accuracy "
                    "and AUROC on val", shards.root, ", ".join(absent))


def warn_untrained_classes(shards: ShardSet) -> None:
    """A class with no train sample (its only slides landed in val or test) gets an output no sample trains: its
    val and test samples all count as misses. The build warns about classes missing from val and test only."""
    counts = shards.manifest["splits"].get("train", {}).get("class_counts", {})
    absent = [c for c in shards.classes if not counts.get(c)]
    if absent:
        log.warning("the train split of %s has no samples of %s: the model's output for %s is never trained, and "
                    "their val/test samples all count as misses (balanced accuracy, per-class recall). Give them "
                    "train slides (more slides per class, or a smaller data.build.val_fraction / test_fraction), "
                    "or drop them from data.classes", shards.root, ", ".join(absent),
                    "it" if len(absent) == 1 else "them")

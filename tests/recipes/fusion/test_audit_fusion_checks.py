"""Mutation audit of `recipes.fusion.checks`, the refusals `FusionRecipe.check` runs before any work: whether the
train samples carry descriptions when an older manifest does not say (any non-blank description among the first
samples counts, a blank one does not), and best-checkpoint metrics undefined on a val split of one class."""
from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional

import pytest

from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.fusion.checks import (PROBE_SAMPLES, check_best_metric_defined, check_text_available,
                                              train_has_descriptions)

CLASSES = ["UD", "PD", "D"]


def _shard(path: Path, texts: List[Optional[bytes]]) -> Path:
    """A train shard whose i-th sample has `texts[i]` as its `txt` member (None: no `txt` member)."""
    with tarfile.open(path, "w") as tar:
        for i, text in enumerate(texts):
            members = {"cls": b"0", "png": b"not-read"}
            if text is not None:
                members["txt"] = text
            for ext, data in members.items():
                info = tarfile.TarInfo(f"k{i:03d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _shards(tmp_path: Path, texts=None, manifest_flag=None, val_counts=None):
    manifest = {"splits": {"val": {"class_counts": val_counts or {"UD": 2, "PD": 2, "D": 2}}}}
    if manifest_flag is not None:
        manifest["has_descriptions"] = manifest_flag
    entries = [] if texts is None else [(_shard(tmp_path / "train-000.tar", texts), len(texts))]
    return SimpleNamespace(root=tmp_path, manifest=manifest, classes=CLASSES, shards=lambda split: entries)


@pytest.mark.parametrize("texts, want", [
    ([b"a neuroblastoma patch"] * 3, True),
    ([b"", b"  \n", b"stroma-poor, many neuroblasts"], True),      # one described sample among blanks is enough
    ([None, b"text"], True),                                        # a sample without a `txt` member first
    ([b"", b" \t\n", None], False),                                 # blank descriptions are no descriptions
    ([None] * PROBE_SAMPLES + [b"late text"], False),              # only the first PROBE_SAMPLES are read
])
def test_an_older_manifest_is_answered_from_the_first_train_samples(tmp_path, texts, want):
    assert train_has_descriptions(_shards(tmp_path, texts)) is want


def test_the_manifests_record_wins_over_the_samples(tmp_path):
    assert train_has_descriptions(_shards(tmp_path, [b""], manifest_flag=True)) is True
    assert train_has_descriptions(_shards(tmp_path, [b"text"], manifest_flag=False)) is False


def test_a_set_without_train_shards_has_no_descriptions(tmp_path):
    assert train_has_descriptions(_shards(tmp_path, None)) is False


def _cfg(mode="prmf", metric="balanced_accuracy"):
    return SimpleNamespace(fusion=SimpleNamespace(model=SimpleNamespace(mode=mode)),
                           train=SimpleNamespace(best_metric=metric))


def test_blank_descriptions_refuse_every_mode_with_a_text_branch(tmp_path):
    shards = _shards(tmp_path, [b" ", b""])
    check_text_available(_cfg("image_only"), shards)
    for mode in ("prmf", "concat", "sum", "fixed_alpha", "text_only"):
        with pytest.raises(ConfigError, match=f"fusion.model.mode={mode} uses a text branch"):
            check_text_available(_cfg(mode), shards)


@pytest.mark.parametrize("metric", ["auroc", "kappa", "quadratic_kappa"])
def test_a_class_listed_with_zero_val_samples_does_not_count_as_present(tmp_path, metric):
    """A manifest lists every class, with 0 for those the val split lacks: one class with samples is one class."""
    shards = _shards(tmp_path, val_counts={"UD": 4, "PD": 0, "D": 0})
    with pytest.raises(ConfigError, match=rf"train.best_metric={metric}: .*\['UD'\] class"):
        check_best_metric_defined(_cfg(metric=metric), shards)
    check_best_metric_defined(_cfg(metric="balanced_accuracy"), shards)


def test_two_val_classes_are_enough_and_the_missing_one_is_warned_about(tmp_path, caplog):
    shards = _shards(tmp_path, val_counts={"UD": 4, "PD": 0, "D": 1})
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.recipes.fusion.checks"):
        check_best_metric_defined(_cfg(metric="auroc"), shards)
    assert "no samples of PD" in caplog.text and "UD" not in caplog.text.split("no samples of")[1]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.recipes.fusion.checks"):
        check_best_metric_defined(_cfg(metric="auroc"), _shards(tmp_path, val_counts={"UD": 1, "PD": 1, "D": 1}))
    assert "no samples of" not in caplog.text

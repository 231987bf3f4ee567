"""A class of the build's classes that no input sample has (`--classes UD,PD,D,GN` on UD/PD/D data) was written
into the manifest without a word: the model then gets an output that no sample trains. The build warns, naming it."""
from __future__ import annotations

import logging

from mmlnb_dist.data.build import build_shards
from mmlnb_dist.data.config import BuildConfig

from support.shards import specs_for, write_patch_folder


def test_a_class_without_samples_is_warned_about(tmp_path, caplog):
    specs = specs_for(write_patch_folder(tmp_path / "p", per_class=2))
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.build"):
        manifest = build_shards(specs, tmp_path / "out", BuildConfig(val_fraction=0), ["UD", "PD", "D", "GN"],
                                progress=False)
    assert manifest["classes"] == ["UD", "PD", "D", "GN"]
    assert "class GN: no sample in 6 (classes UD, PD, D, GN)" in caplog.text


def test_no_warning_when_every_class_has_samples(tmp_path, caplog):
    specs = specs_for(write_patch_folder(tmp_path / "p", per_class=2))
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.build"):
        build_shards(specs, tmp_path / "out", BuildConfig(val_fraction=0), ["UD", "PD", "D"], progress=False)
    assert "no sample in" not in caplog.text

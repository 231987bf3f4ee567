"""`data synth` (and the pipeline's synth stage) painted UD, PD and D whatever `data.classes` said: with
`data.classes=UD,D` the next `shards build` refused every PD patch ("unknown label 'PD'"), after the synth stage had
run. The generator now paints the configured classes, and refuses a class it cannot paint naming data.classes."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.data.collect import collect_samples
from mmlnb_dist.data.synth_set import write_synth_set


def _synth(overrides):
    return load_config(None, ["data.synth.n=6", "data.synth.size=32", "data.synth.n_slides=3", *overrides])


def test_the_synthetic_set_has_the_configured_classes_and_builds_with_them(tmp_path):
    cfg = _synth(["data.classes=UD,D"])
    summary = write_synth_set(tmp_path / "src", cfg.data.synth, "--out", cfg.data.classes)
    assert summary["class_counts"] == {"UD": 3, "D": 3}
    assert sorted({s.label for s in collect_samples(tmp_path / "src", cfg.data.classes)}) == ["D", "UD"]


def test_a_class_the_generator_cannot_paint_is_refused_naming_data_classes(tmp_path):
    cfg = _synth(["data.classes=UD,PD,GN"])
    with pytest.raises(UserError, match=r"data\.classes.*GN.*UD, PD, D"):
        write_synth_set(tmp_path / "src", cfg.data.synth, "--out", cfg.data.classes)
    assert not (tmp_path / "src").exists()


def test_the_pipeline_s_synth_stage_follows_data_classes(tmp_path):
    from mmlnb_dist.pipeline import steps

    base = [f"data.synth_dir={tmp_path / 'src'}", f"run.output_dir={tmp_path / 'runs'}"]
    default = steps.plan_synth(load_config("cpu-demo", base))
    two = steps.plan_synth(load_config("cpu-demo", [*base, "data.classes=UD,D"]))
    assert two.fingerprint != default.fingerprint  # another class list is another set: synthesised again

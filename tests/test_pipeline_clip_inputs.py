"""The CLIP recipe trains on label sets, but the pipeline's slides and shards stages build one label per patch:
`pipeline --config clip-demo --patches ...` (or `--slides`, after hours of tiling) built single-label shards that
train then refused, saying to run the same command again, which could never work. Refused before any stage now,
naming the command that builds a multi-label shard set; so is synthetic data of the other task (`--synthetic` with
`data.synth.task=single` for clip, `multilabel` for fusion, which refuses label sets)."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import main


def _refused(tmp_path, capsys, *args):
    code = main(["pipeline", "--config", "clip-demo", *args, f"run.output_dir={tmp_path / 'runs'}",
                 f"data.shards={tmp_path / 'shards'}", f"data.synth_dir={tmp_path / 'src'}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not any((tmp_path / name).exists() for name in ("runs", "shards", "src"))  # nothing written
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("given", ["--patches", "--slides"])
def test_clip_with_patches_or_slides_is_refused_before_any_stage(tmp_path, capsys, given):
    source = tmp_path / "in"
    source.mkdir()
    extra = ["--labels", str(source / "labels.csv")] if given == "--slides" else []
    (source / "labels.csv").write_text("slide_id,label\n")
    last = _refused(tmp_path, capsys, given, str(source), *extra)
    assert given in last and "clip" in last and "shards build" in last and "--task multilabel" in last, last


def test_clip_on_single_label_synthetic_data_is_refused_before_any_stage(tmp_path, capsys):
    last = _refused(tmp_path, capsys, "--synthetic", "data.synth.task=single")
    assert "data.synth.task" in last and "multilabel" in last, last


def test_fusion_on_multilabel_synthetic_data_is_refused_before_any_stage(tmp_path, capsys):
    code = main(["pipeline", "--config", "cpu-demo", "--synthetic", "data.synth.task=multilabel",
                 f"run.output_dir={tmp_path / 'runs'}", f"data.shards={tmp_path / 'shards'}",
                 f"data.synth_dir={tmp_path / 'src'}"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "data.synth.task=multilabel" in last and "data.synth.task=single" in last, last
    assert not any((tmp_path / name).exists() for name in ("runs", "shards", "src"))

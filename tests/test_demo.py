"""The README's main job, end to end on a small version of the embedded default: both stages run, the seven
metrics come out, and a rerun skips every stage."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmlnb_dist.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_both_stages_then_skips_them(tmp_path, capsys):
    args = [
        "demo", "--config", str(ROOT / "launch/profiles/cpu-demo.yaml"),
        f"run.output_dir={tmp_path / 'runs'}", f"data.synth_dir={tmp_path / 'src'}",
        f"data.shards={tmp_path / 'shards'}",
        "data.synth.n=90", "data.synth.n_slides=9", "data.synth.size=96",
        "data.build.image_size=64", "data.build.test_fraction=0.0", "data.build.val_fraction=0.34",
        "data.loader.num_workers=0", "vlm.max_steps=6", "vlm.generation.max_new_tokens=8",
        "train.epochs=3", "fusion.curriculum.ramp_start=1", "fusion.curriculum.ramp_end=2",
        "fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 1}, "
        "{start_epoch: 2, train_image_encoder: false, train_text_encoder: false}]",
        "tracking.backends=[stdout]",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    for stage in ("synth", "shards", "finetune-vlm", "describe", "train"):
        assert re.search(rf"^\s+{stage}\s+\d+\.\ds", out, re.M), f"stage {stage} did not run:\n{out}"
    table = out[out.index("val split (best checkpoint)"):].splitlines()
    assert table[1].split() == ["Acc", "|", "BAcc", "|", "Kappa", "|", "F1", "|", "Prec", "|", "Rec", "|",
                                "AUROC", "|", "QWK(ord)"]
    values = [float(v) for v in table[2].split("|")]
    assert len(values) == 8 and all(-100.0 <= v <= 100.0 for v in values)
    described = tmp_path / "shards-described"
    assert (described / "manifest.json").is_file()
    assert (tmp_path / "runs" / "cpu-demo-fusion" / "export" / "model.safetensors").is_file()

    assert main(args) == 0
    rerun = capsys.readouterr().out
    assert rerun.count("skipped (up to date)") == 5


@pytest.mark.slow
def test_clip_multilabel_demo_runs_synth_shards_and_training_then_skips_them(tmp_path, capsys):
    """`demo --recipe clip-multilabel`: the multi-label synthetic set, its shards (grouped val and test splits) and
    the CLIP recipe; the printed table holds the run's own best-checkpoint metrics; a rerun trains nothing."""
    import json

    args = ["demo", "--recipe", "clip-multilabel", f"run.output_dir={tmp_path / 'runs'}",
            f"data.synth_dir={tmp_path / 'src'}", f"data.shards={tmp_path / 'shards'}", "data.synth.n=120",
            "data.synth.n_slides=12", "data.loader.num_workers=0", "train.epochs=2", "tracking.backends=[stdout]"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for stage in ("synth", "shards", "train"):
        assert re.search(rf"^\s+{stage}\s+\d+\.\ds", out, re.M), f"stage {stage} did not run:\n{out}"
    assert "finetune-vlm" not in out  # the captions are the text: no VLM stage
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["task"] == "multilabel" and set(manifest["splits"]) == {"train", "val", "test"}
    metrics = json.loads((tmp_path / "runs" / "clip-multilabel-clip" / "metrics.json").read_text())
    row = next(line for line in out.splitlines() if line.startswith("micro_f1 "))
    assert [float(v) for v in row.split()[1:]] == pytest.approx([metrics["val/micro_f1"], metrics["test/micro_f1"]],
                                                                abs=1e-4)
    assert main(args) == 0
    again = capsys.readouterr().out
    assert all(re.search(rf"^\s+{s}\s+skipped", again, re.M) for s in ("synth", "shards", "train")), again

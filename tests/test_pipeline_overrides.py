"""`demo` and `pipeline` ran with overrides none of their stages read (`demo --recipe clip-multilabel
fusion.model.mode=concat vlm.epochs=3`: the CLIP pipeline runs neither the fusion recipe nor the VLM stages) and
exited 0, while `train` refuses them. Now they are refused before any work, in train's words, and the sections the
pipeline does read go on: vlm.* for a recipe that reads descriptions (finetune-vlm, describe), slides.* with
--slides."""
from __future__ import annotations

from support.cli import run_cli


def _into(tmp_path):
    """Every folder a pipeline writes, under `tmp_path` (so a test sees anything it wrote); a small synthetic set,
    so that a pipeline that is not refused stops soon (`--until synth`)."""
    return [f"run.output_dir={tmp_path / 'runs'}", f"data.synth_dir={tmp_path / 'src'}",
            f"data.shards={tmp_path / 'shards'}", "data.synth.n=30", "data.synth.n_slides=6"]


def test_the_clip_demo_refuses_fusion_and_vlm_overrides(tmp_path):
    code, out, err = run_cli(["demo", "--recipe", "clip-multilabel", "--until", "synth", "fusion.model.mode=concat",
                              "vlm.epochs=3", *_into(tmp_path)])
    assert code == 2, err
    assert "train.recipe=clip never reads fusion.model.mode, vlm.epochs: these overrides would change nothing" \
        in err and "clip.*" in err, err
    assert not any(tmp_path.iterdir())


def test_a_pipeline_without_slides_refuses_slides_and_tune_overrides(tmp_path):
    code, _, err = run_cli(["pipeline", "--config", "cpu-demo", "--synthetic", "--until", "synth",
                            "slides.sampling.overlap=0.5", "tune.num_samples=3", *_into(tmp_path)])
    assert code == 2, err
    assert "never reads slides.sampling.overlap, tune.num_samples" in err and "--slides" in err, err
    assert not any(tmp_path.iterdir())


def test_the_fusion_pipeline_refuses_clip_overrides(tmp_path):
    code, _, err = run_cli(["pipeline", "--config", "cpu-demo", "--synthetic", "--until", "synth", "clip.top_k=2",
                            *_into(tmp_path)])
    assert code == 2, err
    assert "train.recipe=fusion never reads clip.top_k" in err and "vlm.*" in err and "fusion.*" in err, err


def test_the_sections_a_pipeline_reads_go_on_to_the_next_check(tmp_path):
    slides, labels = tmp_path / "wsi", tmp_path / "labels.csv"
    code, _, err = run_cli(["pipeline", "--config", "cpu-demo", "--slides", str(slides), "--labels", str(labels),
                            "--until", "bogus", "vlm.epochs=3", "fusion.model.mode=concat",
                            "slides.sampling.overlap=0.5", *_into(tmp_path)])
    assert code == 2 and "never reads" not in err and "--until bogus: no such stage" in err, err

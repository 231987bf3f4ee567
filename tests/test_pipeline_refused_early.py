"""A pipeline (or demo) refused before its first stage (`demo --until bogus`, no shard set at data.shards, an
unknown encoder) still wrote `<run.output_dir>/<run.name>-pipeline/pipeline.log`: the command opened its log file
before the pipeline's checks. Now every check before the first stage comes first, and a refusal writes nothing."""
from __future__ import annotations

from support.cli import run_cli


def _into(tmp_path):
    """Every folder a pipeline writes, under `tmp_path` (so a test sees anything it wrote); a small synthetic set,
    so that a pipeline that is not refused stops soon (`--until synth`)."""
    return [f"run.output_dir={tmp_path / 'runs'}", f"data.synth_dir={tmp_path / 'src'}",
            f"data.shards={tmp_path / 'shards'}", "data.synth.n=30", "data.synth.n_slides=6"]


def test_a_demo_refused_before_its_first_stage_writes_nothing(tmp_path):
    code, _, err = run_cli(["demo", "--until", "bogus", *_into(tmp_path)])
    assert code == 2 and "--until bogus" in err, err
    assert not any(tmp_path.iterdir())

    code, _, err = run_cli(["pipeline", "--config", "clip-demo", *_into(tmp_path)])  # no shard set at data.shards
    assert code == 2 and "no shard set there" in err, err
    assert not any(tmp_path.iterdir())

    code, _, err = run_cli(["demo", "fusion.model.image_encoder.name=nosuch", *_into(tmp_path)])
    assert code == 2 and "unknown image encoder 'nosuch'" in err, err
    assert not any(tmp_path.iterdir())

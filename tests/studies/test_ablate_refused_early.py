"""What `ablate` refuses before its first run:
- `--descriptions vlm` for the CLIP recipe, which trains on the captions already in data.shards and never runs a
  VLM stage: the flag was ignored, and the table read as if the VLM had written its text;
- a data.shards that is no shard set: the first row's stage started, and its record and the log said that it
  stopped and that the same command would resume it."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError
from support.cli import run_cli


def _left(tmp_path):
    return sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))


def test_the_clip_recipe_refuses_vlm_descriptions_it_would_never_read(tmp_path):
    code, _, err = run_cli(["ablate", "--config", "clip-demo", "--descriptions", "vlm", f"run.output_dir={tmp_path}"])
    assert code == 2, err
    assert "--descriptions vlm: the clip recipe" in err and "data.shards" in err and "Traceback" not in err, err
    assert _left(tmp_path) in ([], ["clip-demo-study", "clip-demo-study/study.log"])  # no MLflow store, no run started


def test_the_clip_recipe_reads_the_shards_own_text_as_descriptions_shards_asks():
    from mmlnb_dist.studies import description_sources

    cfg = load_config("clip-demo")
    assert description_sources(cfg, ["concat", "sum"], "shards") == {"concat": None, "sum": None}
    assert description_sources(cfg, ["concat"], None) == {"concat": None}
    with pytest.raises(ConfigError, match="--descriptions vlm: the clip recipe"):
        description_sources(cfg, ["concat"], "vlm")


@pytest.mark.parametrize("profile, flags", [("clip-demo", []), ("cpu-demo", ["--descriptions", "shards"]),
                                           ("cpu-demo", [])])
def test_a_study_without_a_shard_set_starts_no_row(tmp_path, profile, flags):
    """Refused before a row's stage record says it stopped and that the same command resumes it, and before the
    study's MLflow parent run is opened (cpu-demo with VLM descriptions left an MLflow store and a parent run that
    ended FAILED)."""
    code, _, err = run_cli(["ablate", "--config", profile, *flags, f"run.output_dir={tmp_path}",
                            f"data.shards={tmp_path / 'nowhere'}"])
    assert code == 2, err
    assert f"shard folder not found: {tmp_path / 'nowhere'}" in err and "Traceback" not in err, err
    assert "resumes it" not in err and not list(tmp_path.rglob(".*.stage.json")), _left(tmp_path)
    assert _left(tmp_path) in ([], [f"{profile}-study", f"{profile}-study/study.log"])  # no MLflow store, no run started

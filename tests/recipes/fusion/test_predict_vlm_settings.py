"""`predict --vlm` writes each image's description with the VLM settings of the descriptions the model trained
on. Without an adapter (a pipeline with `vlm.finetune=false`, an `export-vlm` copy whose adapter is gone) it used
the built-in defaults without a word: another prompt, another image size, other decoding, even another tiny vision
tower than the pipeline's describe stage, so the model was scored on text unlike its training text. The settings
now come from the fine-tuning run beside the adapter, else from `--config` (the pipeline's printed line passes its
own), else the defaults with a warning that says so."""
from __future__ import annotations

import logging

from mmlnb_dist.config import load_config, save_config
from mmlnb_dist.pipeline.report import predict_line
from mmlnb_dist.predict.run import vlm_settings


def test_the_adapter_s_run_wins_then_the_given_config_then_the_defaults_with_a_warning(tmp_path, caplog):
    run = tmp_path / "runs" / "ft"
    (run / "adapter").mkdir(parents=True)
    save_config(load_config("cpu-demo", ["vlm.min_pixels=1024", "vlm.max_pixels=1024"]), run / "config.yaml")
    given = load_config("cpu-demo", ["vlm.prompt=given"])
    assert vlm_settings("tiny", run / "adapter", given).vlm.min_pixels == 1024
    assert vlm_settings("tiny", None, given).vlm.prompt == "given"
    with caplog.at_level(logging.WARNING):
        defaults = vlm_settings("tiny", None, None)
    assert defaults.vlm == load_config(None).vlm
    assert "the built-in defaults" in caplog.text and "--config" in caplog.text


def test_the_pipeline_s_predict_line_passes_its_config_when_there_is_no_adapter(tmp_path):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=base", "vlm.finetune=false"])
    line = predict_line(cfg, "models:/m@champion", "shards", "sqlite:///x.db", "p.csv", True, None)
    assert f"--config {tmp_path / 'base-pipeline' / 'config.yaml'}" in line
    with_adapter = predict_line(cfg, "models:/m@champion", "shards", "sqlite:///x.db", "p.csv", True, "runs/a/adapter")
    assert "--adapter runs/a/adapter" in with_adapter and "--config" not in with_adapter

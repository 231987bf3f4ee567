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


def test_with_an_adapter_s_run_the_generation_batch_size_may_change_and_text_settings_are_said(tmp_path, caplog):
    """A `predict --vlm` out of memory is told to lower the generation batch size; with the adapter's run beside it,
    `--config` and key=value were silently ignored (the batch size too). The batch size, which does not change the
    text, is now taken; a prompt or decoding the given config would change stays the run's, and a warning says so."""
    run = tmp_path / "runs" / "ft"
    (run / "adapter").mkdir(parents=True)
    save_config(load_config("cpu-demo", ["vlm.min_pixels=1024", "vlm.max_pixels=1024",
                                         "vlm.generation.batch_size=8"]), run / "config.yaml")
    smaller = load_config("cpu-demo", ["vlm.min_pixels=1024", "vlm.max_pixels=1024", "vlm.generation.batch_size=2"])
    with caplog.at_level(logging.WARNING):
        cfg = vlm_settings("tiny", run / "adapter", smaller)
    assert cfg.vlm.generation.batch_size == 2 and cfg.vlm.min_pixels == 1024
    assert "not applied" not in caplog.text
    other = load_config("cpu-demo", ["vlm.prompt=other", "vlm.generation.batch_size=2"])
    with caplog.at_level(logging.WARNING):
        cfg = vlm_settings("tiny", run / "adapter", other)
    assert cfg.vlm.prompt != "other" and cfg.vlm.min_pixels == 1024 and cfg.vlm.generation.batch_size == 2
    assert "not applied" in caplog.text and "vlm.prompt" in caplog.text and "vlm.min_pixels" in caplog.text


def test_a_smaller_generation_batch_continues_the_same_predict_job():
    """The OOM remedy must not cost the finished chunks: the job key (`vlm_writer`) held the whole vlm section, the
    batch size too, so a resume with a smaller batch started from the first image."""
    from mmlnb_dist.predict.run import vlm_writer

    big, small = (load_config("cpu-demo", [f"vlm.generation.batch_size={n}"]) for n in (8, 2))
    assert vlm_writer("tiny", None, big) == vlm_writer("tiny", None, small)
    assert vlm_writer("tiny", None, big) != vlm_writer("tiny", None, load_config("cpu-demo", ["vlm.prompt=other"]))


def test_a_vlm_override_without_config_reaches_predict(monkeypatch, tmp_path):
    """`predict --vlm ... vlm.generation.batch_size=2` (the OOM message's remedy) was dropped without --config."""
    import mmlnb_dist.predict as predict
    from mmlnb_dist.cli import main

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(predict, "predict_to_file", fake)
    base = ["predict", "x.png", "--model", "m", "--out", str(tmp_path / "p.csv"), "--vlm", "tiny"]
    try:
        main([*base, "vlm.generation.batch_size=2"])
    except SystemExit:
        pass
    assert seen["vlm_config"].vlm.generation.batch_size == 2
    try:
        main([*base, "tracking.experiment=x"])  # no VLM setting given: the defaults are no given config
    except SystemExit:
        pass
    assert seen["vlm_config"] is None


def test_the_same_base_weights_under_another_name_continue_the_predict_job(tmp_path):
    """The journal's job held the VLM's name as given: a predict resumed with a copy of the same weights (or a hub
    id vs its local copy) started over. The weights' digest decides, as for describe; other weights do not resume."""
    from mmlnb_dist.predict.journal import writer_job
    from mmlnb_dist.predict.run import vlm_writer

    cfg = load_config("cpu-demo")
    folders = [tmp_path / name for name in ("a", "copy", "other")]
    for folder, data in zip(folders, (b"w" * 64, b"w" * 64, b"x" * 64)):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(data)
    a, copy, other = (writer_job(vlm_writer(str(f), None, cfg)) for f in folders)
    assert a == copy and a != other

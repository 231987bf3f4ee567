"""`mmlnb-dist pipeline --slides`: synthetic whole-slide images (`slides synth`) through tiling, the VLM stages
(fine-tuned on a separate pairs set: tiles carry no descriptions), training, slide-level evaluation and the
registry. Tiny settings: this checks the wiring, not accuracy (test_demo.py checks accuracy)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mmlnb_dist.cli import main

from support.vlm import make_pairs

ROOT = Path(__file__).resolve().parents[1]
TINY_SLIDE_PIPELINE = [
    "slides.sampling.max_tiles_per_slide=6", "data.build.image_size=64", "data.build.val_fraction=0.34",
    "data.build.test_fraction=0.34", "data.loader.num_workers=0", "vlm.generation.max_new_tokens=4",
    "train.epochs=2", "train.global_batch_size=8", "fusion.curriculum.ramp_start=1", "fusion.curriculum.ramp_end=2",
    "fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 1}]",
    "tracking.backends=[mlflow]"]
"""A pipeline from synthetic slides at the smallest settings that still exercise every stage: six tiles per slide,
two epochs with the profile's curriculum phases compressed into them."""


@pytest.mark.slow
def test_pipeline_from_slides_to_a_registered_model(tmp_path, capsys):
    slides = tmp_path / "slides"
    assert main(["slides", "synth", "--out", str(slides), "--per-class", "3", "--size", "1024"]) == 0
    pairs = make_pairs(tmp_path / "pairs", n=24, per_shard=12, val_fraction=0.25)
    capsys.readouterr()
    args = ["pipeline", "--slides", str(slides), "--labels", str(slides / "labels.csv"),
            "--config", str(ROOT / "launch/profiles/cpu-demo.yaml"), f"run.output_dir={tmp_path / 'runs'}",
            f"data.shards={tmp_path / 'tiles'}", f"vlm.pairs={pairs}", "run.name=wsi", "vlm.max_steps=2",
            "vlm.global_batch_size=4", *TINY_SLIDE_PIPELINE]
    assert main(args) == 0
    out, err = capsys.readouterr()
    # the report holds the results; the run's full tables (per class, confusion matrix) are in the log only
    assert "split, best checkpoint" not in err and "confusion matrix" not in err, err
    assert f"the VLM fine-tunes on the pairs of vlm.pairs={pairs} (18 train pairs)" in err, err  # said, not silent
    log = (tmp_path / "runs" / "wsi-pipeline" / "pipeline.log").read_text()
    assert "val split, best checkpoint" in log and "test split, best checkpoint" in log and "confusion matrix" in log
    for stage in ("tile", "finetune-vlm", "describe", "train", "evaluate", "register"):
        assert f"| {stage} | ran |" in out, out
    assert "| synth |" not in out and "| shards |" not in out  # tiling writes the shard set itself
    manifest = json.loads((tmp_path / "tiles" / "manifest.json").read_text())
    assert manifest["splits"]["test"]["num_samples"] > 0
    evaluation = json.loads((tmp_path / "runs" / "wsi-pipeline" / "evaluate" / "evaluation.json").read_text())
    test_slides = {s["slide_id"] for s in evaluation["slides"]["test"]}
    assert test_slides and all(s.startswith("synth-") for s in test_slides)  # slide ids from the tiles' metadata
    registered = json.loads((tmp_path / "runs" / "wsi-pipeline" / "register" / "registered.json").read_text())
    assert registered["alias"] == "champion" and registered["alias_moved"] is True
    assert "models:/wsi@champion" in out


def test_the_console_shows_no_library_notice_a_user_cannot_act_on(capsys):
    """Library deprecations, DeepSpeed's CPU-accelerator notice and its "op built successfully" print stay off the
    console (one place: core/logging.py); a warning of this package (about the user's data) still shows."""
    import logging
    import warnings

    from mmlnb_dist.core.logging import library_prints, setup_logging

    setup_logging(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("default")  # pytest's own filters first, then ours on top, as in the CLI
        setup_logging(0)
        warnings.warn_explicit("old API", DeprecationWarning, "lib.py", 1, module="transformers.x")
        warnings.warn_explicit("old API", FutureWarning, "lib.py", 1, module="torch.y")
        warnings.warn_explicit("your shards are odd", DeprecationWarning, "x.py", 1, module="mmlnb_dist.data.x")
    assert [str(w.message) for w in caught] == ["your shards are odd"]
    reached = []
    probe = logging.Handler()
    probe.emit = reached.append  # what DeepSpeed's own handler (stdout) would print
    ds = logging.getLogger("DeepSpeed")
    ds.addHandler(probe)
    try:
        ds.warning("Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.")
        ds.warning("a real DeepSpeed problem")
    finally:
        ds.removeHandler(probe)
    assert [r.getMessage() for r in reached] == ["a real DeepSpeed problem"]
    # Ray announces its secure default (token authentication on) as a warning on every local start; the warning
    # that authentication is off is a problem and stays
    auth = logging.getLogger("ray._private.authentication.authentication_token_setup")
    reached.clear()
    auth.addHandler(probe)
    try:
        auth.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
        auth.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")
    finally:
        auth.removeHandler(probe)
    assert [r.getMessage()[:40] for r in reached] == ["Token authentication is disabled for thi"]
    with library_prints("deepspeed"):
        print("DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully")
    seen = capsys.readouterr()
    assert "accelerator" not in seen.out + seen.err and "built successfully" not in seen.out + seen.err


@pytest.mark.slow
def test_slides_without_any_descriptions_run_with_the_base_vlm_when_fine_tuning_is_off(tmp_path, capsys):
    """A user with slides and labels only (no image-description pairs anywhere): `vlm.finetune=false` skips the
    fine-tuning stage and the base VLM (no adapter) describes the tiles; the registered model is served with the
    printed predict line, which names the VLM and no adapter."""
    slides = tmp_path / "slides"
    assert main(["slides", "synth", "--out", str(slides), "--per-class", "3", "--size", "1024"]) == 0
    capsys.readouterr()
    args = ["pipeline", "--slides", str(slides), "--labels", str(slides / "labels.csv"), "--config", "cpu-demo",
            f"run.output_dir={tmp_path / 'runs'}", f"data.shards={tmp_path / 'tiles'}", "run.name=base",
            f"vlm.pairs={tmp_path / 'no-pairs'}", "vlm.finetune=false", *TINY_SLIDE_PIPELINE]
    assert main(args) == 0
    out, err = capsys.readouterr()
    for stage in ("tile", "describe", "train", "evaluate", "register"):
        assert f"| {stage} | ran |" in out, out
    assert "| finetune-vlm |" not in out and not (tmp_path / "runs" / "base-vlm").exists()
    assert "describe: the base VLM tiny writes the descriptions (vlm.finetune=false: no adapter)" in err, err
    described = json.loads((tmp_path / "tiles-described" / "manifest.json").read_text())
    assert described["has_descriptions"] is True
    line = next(x.strip() for x in out.splitlines() if x.strip().startswith("mmlnb-dist predict "))
    assert " --vlm tiny " in line and "--adapter" not in line, line
    assert f"--config {tmp_path / 'runs' / 'base-pipeline' / 'config.yaml'}" in line, line  # its describe settings
    preds = tmp_path / "runs" / "base-pipeline" / "predictions.csv"
    assert main(line.split()[1:]) == 0  # the printed line, as a user pastes it
    with open(preds, newline="") as fh:  # csv: a generated description may hold a line break
        rows = list(csv.DictReader(fh))
    assert len(rows) == described["splits"]["test"]["num_samples"] and all(r["description"] for r in rows)


def test_patches_without_a_val_split_are_refused_before_the_vlm_stages(tmp_path, capsys):
    """`--patches`: the shards are built, then a set the training stage cannot use (no val split to pick the best
    checkpoint) stops the pipeline at once, naming the split and the remedy, before minutes of VLM work."""
    from support.shards import write_described_patches

    patches = write_described_patches(tmp_path / "patches")
    code = main(["pipeline", "--patches", str(patches), "--config", "cpu-demo", f"run.output_dir={tmp_path / 'runs'}",
                 f"data.shards={tmp_path / 'shards'}", "data.build.val_fraction=0", "data.build.test_fraction=0",
                 "data.build.group_by_slide=false"])
    assert code == 2
    err = capsys.readouterr().err
    assert "has no 'val' samples (to pick the best checkpoint)" in err and "data.build.val_fraction" in err
    assert (tmp_path / "shards" / "manifest.json").is_file()  # the shards stage ran
    assert not (tmp_path / "runs" / "cpu-demo-vlm").exists()  # the VLM stage did not


@pytest.mark.parametrize("source", ["slides", "patches"])
def test_a_source_without_descriptions_is_refused_before_any_stage(tmp_path, capsys, source):
    """The VLM fine-tunes on image-description pairs. Tiled slides never carry descriptions, and patches carry
    them only with a `description` column or a descriptions.jsonl. Without them, and with no `vlm.pairs` shard set,
    the pipeline stops before it tiles or builds anything (tiling can take hours), naming every remedy."""
    from support.shards import write_patch_folder

    if source == "slides":
        slides = tmp_path / "slides"
        assert main(["slides", "synth", "--out", str(slides), "--per-class", "1", "--size", "1024"]) == 0
        given = ["--slides", str(slides), "--labels", str(slides / "labels.csv")]
    else:
        given = ["--patches", str(write_patch_folder(tmp_path / "patches", per_class=4))]
    capsys.readouterr()
    code = main(["pipeline", *given, "--config", "cpu-demo", f"run.output_dir={tmp_path / 'runs'}",
                 f"data.shards={tmp_path / 'shards'}", f"vlm.pairs={tmp_path / 'no-pairs'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "finetune-vlm" in err and f"vlm.pairs={tmp_path / 'no-pairs'}" in err, err
    assert "'description' column" in err and "descriptions.jsonl" in err and "vlm.finetune=false" in err, err
    if source == "slides":
        assert "tiled slides carry no descriptions" in err, err
    else:
        assert f"the patches in {tmp_path / 'patches'} carry no descriptions" in err, err
    # nothing ran and nothing is written (the refusal is on the console, exit 2), as every command refuses
    assert not (tmp_path / "shards").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("finetune", ["true", "false"])
def test_a_vlm_that_cannot_be_loaded_is_refused_before_any_stage(tmp_path, capsys, finetune):
    """A profile's Hub VLM not in the cache of a machine without network (or a mistyped folder) stopped the
    pipeline only at finetune-vlm or describe, after tiling or building; now before the first stage."""
    from support.shards import write_described_patches

    patches = write_described_patches(tmp_path / "patches")
    capsys.readouterr()
    code = main(["pipeline", "--patches", str(patches), "--config", "cpu-demo", f"run.output_dir={tmp_path / 'runs'}",
                 f"data.shards={tmp_path / 'shards'}", f"vlm.model={tmp_path / 'qwen'}", f"vlm.finetune={finetune}"])
    err = capsys.readouterr().err
    assert code == 2 and f"vlm.model '{tmp_path / 'qwen'}': no such folder" in err.strip().splitlines()[-1], err
    assert not (tmp_path / "shards").exists()


def test_loading_and_registering_the_served_models_prints_nothing_to_act_on(tmp_path):
    """MLflow asked for a type hint on the pyfunc models' `predict` on every import (evaluate and register stages,
    `predict`), inside its own `catch_warnings` where no filter of ours applies: the hint is given instead. And it
    drew a progress bar for each artifact download (registering downloads the model's files) and logged its store
    migrations at INFO when imported after our logging set-up: both off, unless the user sets MLflow's variables."""
    import os
    import subprocess
    import sys

    code = ("from mmlnb_dist.core.logging import setup_logging; setup_logging(0); "
            "import mmlnb_dist.recipes.fusion.pyfunc_model, mmlnb_dist.recipes.clip.pyfunc_model; "
            "import mlflow.artifacts, pathlib; d = pathlib.Path(r'{d}'); (d / 'a').mkdir(); "
            "(d / 'a' / 'f.txt').write_text('x'); mlflow.artifacts.download_artifacts("
            "artifact_uri=(d / 'a').as_uri(), dst_path=str(d / 'b')); "
            "mlflow.MlflowClient('sqlite:///' + str(d / 'mlflow.db')).search_experiments()").format(d=tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_LOGGING_LEVEL")}
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "b" / "a" / "f.txt").is_file() or list((tmp_path / "b").rglob("f.txt"))
    assert "Warning" not in proc.stderr and "Downloading artifacts" not in proc.stderr, proc.stderr[-2000:]
    assert "INFO mlflow" not in proc.stderr, proc.stderr[-2000:]  # a new store's "Creating initial ... tables"


def test_how_long_ranks_wait_is_not_part_of_what_a_stage_or_a_study_row_was_built_from(tmp_path):
    """Changing `distributed.rank0_wait_s` does not make a rerun rebuild the fine-tuned VLM or the
    classifier, nor a study retrain its rows; a distributed setting that changes results does."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.pipeline.stages import StageResult
    from mmlnb_dist.pipeline.steps import plan_finetune_vlm, plan_train
    from mmlnb_dist.studies import job_fingerprint

    shards = StageResult("shards", tmp_path / "shards", "0123456789abcdef", True, 0.0, {})

    def fingerprints(*overrides):
        cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", *overrides])
        return (plan_finetune_vlm(cfg, shards, DistEnv()).fingerprint, plan_train(cfg, shards, DistEnv()).fingerprint,
                job_fingerprint(cfg))

    base = fingerprints()
    assert fingerprints("distributed.rank0_wait_s=60") == base
    assert all(a != b for a, b in zip(fingerprints("distributed.gradient_clipping=0.5"), base))



def test_a_stage_is_rebuilt_when_what_it_reads_was_rebuilt(tmp_path):
    """A stage's fingerprint follows the fingerprints of the stages it reads: with everything else equal, rebuilt
    shards retrain the classifier and redescribe the patches, a refitted VLM redescribes them, a regenerated source
    rebuilds the shards. Without it a rerun would report a model or descriptions made from the old data as up to
    date."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.pipeline.stages import StageResult
    from mmlnb_dist.pipeline.steps import plan_describe, plan_shards, plan_train

    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}"])

    def result(name, fp):
        return StageResult(name, tmp_path / name, fp, True, 0.0, {"adapter_dir": str(tmp_path / "adapter")})

    shards, other_shards = result("shards", "0123456789abcdef"), result("shards", "fedcba9876543210")
    vlm, other_vlm = result("finetune-vlm", "1111111111111111"), result("finetune-vlm", "2222222222222222")
    source, other_source = result("synth", "3333333333333333"), result("synth", "4444444444444444")

    def train(s):
        return plan_train(cfg, s, DistEnv()).fingerprint

    def describe(v, s):
        return plan_describe(cfg, v, s, DistEnv()).fingerprint

    def shard_set(src):
        return plan_shards(cfg, src).fingerprint

    assert train(shards) == train(result("shards", shards.fingerprint))  # (same inputs: up to date)
    assert train(shards) != train(other_shards)
    assert describe(vlm, shards) == describe(result("finetune-vlm", vlm.fingerprint), shards)
    assert describe(vlm, shards) != describe(vlm, other_shards)
    assert describe(vlm, shards) != describe(other_vlm, shards)
    assert shard_set(source) == shard_set(result("synth", source.fingerprint))
    assert shard_set(source) != shard_set(other_source)


def test_the_pipeline_log_ends_with_the_error_that_stopped_it(tmp_path, monkeypatch):
    """A pipeline left to run overnight is read from its log afterwards: an unexpected failure is recorded there
    with its traceback, not only printed to a console that may be gone."""
    import mmlnb_dist.pipeline

    def fails(*args, **kwargs):
        raise RuntimeError("disk full while writing a shard")

    monkeypatch.setattr(mmlnb_dist.pipeline, "run_pipeline", fails)
    with pytest.raises(RuntimeError, match="disk full"):
        main(["pipeline", "--synthetic", "--config", "cpu-demo", f"run.output_dir={tmp_path}", "run.name=night"])
    log = (tmp_path / "night-pipeline" / "pipeline.log").read_text()
    assert "ERROR" in log and "Traceback" in log and "RuntimeError: disk full while writing a shard" in log, log


def test_another_runs_shards_are_never_rebuilt_under_its_results(tmp_path, capsys):
    """Two pipelines of one profile on different patches (run.name A, then B) share `data.shards`: B silently
    rebuilt A's shards (and then its described set) from B's patches, under A's trained model and report. Now B is
    refused, naming both runs and how to give B its own folder; A itself still rebuilds what a change reaches."""
    from support.shards import write_patch_folder

    def pipeline(name, patches, *extra):
        return main(["pipeline", "--patches", str(patches), "--config", "cpu-demo", "--until", "shards",
                     f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}", *extra])

    a = write_patch_folder(tmp_path / "a", per_class=6)
    b = write_patch_folder(tmp_path / "b", per_class=5)
    shards = f"data.shards={tmp_path / 'shards'}"
    assert pipeline("A", a, shards) == 0
    manifest = (tmp_path / "shards" / "manifest.json").read_text()
    capsys.readouterr()
    assert pipeline("B", b, shards) == 2
    err = capsys.readouterr().err
    assert "holds what pipeline run 'A' built" in err and "this run ('B')" in err and "data.shards=" in err, err
    assert (tmp_path / "shards" / "manifest.json").read_text() == manifest  # untouched
    assert pipeline("B", b, f"data.shards={tmp_path / 'shards-b'}") == 0  # its own folder
    assert pipeline("B", a, shards) == 0  # the same inputs and settings: A's up-to-date shards are shared
    assert (tmp_path / "shards" / "manifest.json").read_text() == manifest
    assert pipeline("A", b, shards) == 0  # A's own output follows A's inputs
    assert (tmp_path / "shards" / "manifest.json").read_text() != manifest

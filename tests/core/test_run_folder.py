"""One job per run folder, and resumes that cannot silently change what a run computes.

Issue 11 items 1 and 5: two trainings started into one run name both exited 0 and reported each other's metrics;
a resume with another learning rate, seed or shard set was accepted and overwrote `config.yaml`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml

from mmlnb_dist.core.checkpoint import fp32_state_dict_from_checkpoint
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.recipe import run
from support.probe import LinearProbe, multi_hot_shards, probe_config

ROOT = Path(__file__).resolve().parents[2]
STDOUT_ONLY = "tracking.backends=[stdout]"


def hold_lock_in_another_process(folder: Path) -> subprocess.Popen:
    """A process that takes the folder's lock (as a job would) and holds it until its stdin closes."""
    code = ("import sys; from mmlnb_dist.core.runlock import FolderLock\n"
            "lock = FolderLock(sys.argv[1], 'train').acquire(); print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return multi_hot_shards(tmp_path_factory.mktemp("probe"))


def test_a_second_run_into_a_busy_folder_stops_at_once_naming_folder_and_holder(shards, tmp_path):
    started, go = threading.Event(), threading.Event()
    results = {}

    def hold_in_epoch_0(epoch, metrics):
        started.set()
        go.wait(timeout=120)

    def first():
        results["first"] = run(LinearProbe, probe_config(shards, tmp_path, STDOUT_ONLY, "train.epochs=1"),
                               report=hold_in_epoch_0)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(timeout=120), "the first run never reached its first epoch"
        with pytest.raises(UserError) as err:
            run(LinearProbe, probe_config(shards, tmp_path, STDOUT_ONLY, "train.epochs=1"))
        message = str(err.value)
        assert str(tmp_path / "probe") in message and f"pid {os.getpid()}" in message and "in use" in message
    finally:
        go.set()
        thread.join(timeout=120)
    assert "val/loss" in results["first"]  # the first run finished undisturbed
    assert not (tmp_path / "probe" / ".lock.json").exists()  # released on exit


def test_the_train_command_refuses_a_busy_run_folder_with_exit_code_2(shards, tmp_path, capsys):
    from mmlnb_dist.cli import main

    holder = hold_lock_in_another_process(tmp_path / "runs" / "busy")
    try:
        code = main(["train", "--config", "cpu-demo", f"run.output_dir={tmp_path / 'runs'}", "run.name=busy",
                     f"data.shards={shards}", "fusion.model.mode=image_only", STDOUT_ONLY])
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path / "runs" / "busy") in err and f"pid {holder.pid}" in err


def test_a_lock_left_by_a_killed_job_is_taken_over(shards, tmp_path, caplog):
    run_dir = tmp_path / "probe"
    holder = hold_lock_in_another_process(run_dir)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert json.loads((run_dir / ".lock.json").read_text())["pid"] == holder.pid  # the stale record is there
    with caplog.at_level("INFO", logger="mmlnb_dist.core.runlock"):
        result = run(LinearProbe, probe_config(shards, tmp_path, STDOUT_ONLY, "train.epochs=1"))
    assert "val/loss" in result
    assert f"pid {holder.pid}" in caplog.text and "taking over" in caplog.text


CONSTANT_LR = ("train.lr_schedule.name=constant", "train.lr_schedule.warmup_ratio=0")


def test_resume_refuses_settings_that_change_results_and_records_allowed_changes(shards, tmp_path):
    # a constant learning rate: with a decaying schedule, more epochs stretch the schedule of the epochs already
    # run, and no uninterrupted run equals the result (the resume warns about it)
    base = probe_config(shards, tmp_path, STDOUT_ONLY, "train.epochs=1", *CONSTANT_LR)
    run(LinearProbe, base)
    stored = (tmp_path / "probe" / "config.yaml").read_text()

    with pytest.raises(UserError) as err:
        run(LinearProbe, probe_config(shards, tmp_path, STDOUT_ONLY, "train.epochs=2", "run.resume=true",
                                      "train.lr=0.01", "run.seed=7", *CONSTANT_LR))
    message = str(err.value)
    assert "train.lr: 0.05 -> 0.01" in message and "run.seed: 0 -> 7" in message
    assert "train.epochs" not in message  # more epochs is allowed, so not listed as a blocker
    assert (tmp_path / "probe" / "config.yaml").read_text() == stored  # nothing overwritten

    # more epochs (and another logging interval, a longer wait for rank 0) may change: the run continues and
    # the change is recorded
    resumed = run(LinearProbe, probe_config(shards, tmp_path, STDOUT_ONLY, "train.epochs=2", "run.resume=true",
                                            "train.log_every=3", "distributed.rank0_wait_s=3600", *CONSTANT_LR))
    assert "val/loss" in resumed
    (record,) = json.loads((tmp_path / "probe" / "resume_changes.json").read_text())["resumes"]
    # (run.resume is how the process started, not a setting of the run: never listed as a change)
    assert record["changed"] == {"train.epochs": [1, 2], "train.log_every": [10, 3],
                                 "distributed.rank0_wait_s": [604800, 3600]}
    assert yaml.safe_load((tmp_path / "probe" / "config.yaml").read_text())["train"]["epochs"] == 2

    # and the resumed two-epoch run equals an uninterrupted two-epoch run
    full = tmp_path / "full"
    run(LinearProbe, probe_config(shards, full, STDOUT_ONLY, "train.epochs=2", *CONSTANT_LR))
    _, a = fp32_state_dict_from_checkpoint(full / "probe" / "checkpoints")
    _, b = fp32_state_dict_from_checkpoint(tmp_path / "probe" / "checkpoints")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resume_with_fewer_epochs_than_the_run_trained_is_refused(shards, tmp_path):
    """`run.resume=true train.epochs=1` on a run that trained 2 epochs trained nothing, then rewrote the run's
    config.yaml to say 1 epoch while its model had 2: the run's record no longer described its model."""
    run(LinearProbe, probe_config(shards, tmp_path, STDOUT_ONLY, "train.epochs=2", *CONSTANT_LR))
    stored = (tmp_path / "probe" / "config.yaml").read_text()
    with pytest.raises(UserError, match=r"train\.epochs=1: .* has trained 2 epochs \(its latest checkpoint "
                                        r"epoch-0001\)"):
        run(LinearProbe, probe_config(shards, tmp_path, STDOUT_ONLY, "train.epochs=1", "run.resume=true",
                                      *CONSTANT_LR))
    assert (tmp_path / "probe" / "config.yaml").read_text() == stored
    assert not (tmp_path / "probe" / "resume_changes.json").exists()
    # as many epochs as it trained: nothing more to train, and nothing refused
    run(LinearProbe, probe_config(shards, tmp_path, STDOUT_ONLY, "train.epochs=2", "run.resume=true", *CONSTANT_LR))


def test_a_vlm_resume_that_trains_longer_under_its_cosine_schedule_is_warned_about(tmp_path, caplog):
    """The warning named only `train.epochs` under `train.lr_schedule`: a VLM fine-tune resumed with more
    `vlm.epochs` (its cosine `vlm.lr_schedule` stretched, the learning rate jumping back up) said nothing."""
    from mmlnb_dist.config import load_config, save_config
    from mmlnb_dist.core.recipe import check_resume_config
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    save_config(load_config("rtx4090", ["vlm.epochs=5"]), tmp_path / "config.yaml")
    with caplog.at_level("WARNING"):
        check_resume_config(load_config("rtx4090", ["vlm.epochs=10", "run.resume=true"]), tmp_path,
                            FinetuneVLMRecipe, record=False)
    assert "vlm.epochs changed under a cosine learning-rate schedule (vlm.lr_schedule)" in caplog.text
    caplog.clear()
    # no warmup either: a warmup is a share of the steps, stretched too (tests/core/test_resume_warmup_stretched.py)
    constant = ["vlm.lr_schedule.name=constant", "vlm.lr_schedule.warmup_ratio=0"]
    save_config(load_config("rtx4090", ["vlm.epochs=5", *constant]), tmp_path / "config.yaml")
    with caplog.at_level("WARNING"):
        check_resume_config(load_config("rtx4090", ["vlm.epochs=10", *constant, "run.resume=true"]), tmp_path,
                            FinetuneVLMRecipe, record=False)
    assert "stretched" not in caplog.text

"""The console of a training command shows one line per epoch (issue 13): the stdout backend's per-step metric
records go to `<run_dir>/metrics.jsonl` and the log (DEBUG), and reach the console only with `--verbose`."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from mmlnb_dist.cli import main

from support.fusion import CPU_DEMO, ROOT, make_shards

EPOCHS = 3


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("console"), n=60, size=32)


def _train(shards, out, *flags):
    return main([*flags, "train", "--config", str(CPU_DEMO), f"data.shards={shards}", f"run.output_dir={out}",
                 "run.name=console", "tracking.backends=[stdout]", "data.loader.num_workers=0",
                 "data.loader.image_size=32", f"train.epochs={EPOCHS}", "train.log_every=1",
                 "fusion.curriculum.phases=[{start_epoch: 0}]", "fusion.curriculum.ramp_start=0",
                 "fusion.curriculum.ramp_end=2"])


def test_console_has_one_line_per_epoch_and_the_steps_stay_in_the_metrics_file(shards, tmp_path, capsys):
    assert _train(shards, tmp_path) == 0
    captured = capsys.readouterr()
    console = captured.out + captured.err
    epoch_lines = [line for line in console.splitlines() if re.search(r"\[recipe\] epoch \d+ ", line)]
    assert len(epoch_lines) == EPOCHS, console[-3000:]
    assert "[step " not in console, [line for line in console.splitlines() if "[step " in line][:5]
    # the phase lines follow training forward; the reload of the best checkpoint is named as such, not as an epoch
    phase_epochs = [int(e) for e in re.findall(r"\[phases\] epoch (\d+): phase", console)]
    assert phase_epochs == sorted(phase_epochs), phase_epochs
    assert re.search(r"\[phases\] best checkpoint \(epoch \d+, chosen on val balanced_accuracy \d\.\d{4}\): phase",
                     console), console[-3000:]
    records = [json.loads(line) for line in (tmp_path / "console" / "metrics.jsonl").read_text().splitlines()]
    steps = sorted({r["step"] for r in records if "train/loss" in r})
    assert len(steps) > EPOCHS  # log_every=1: every optimizer step is recorded, not only the epochs


def test_verbose_flag_shows_the_step_records_on_the_console(shards, tmp_path, capsys):
    assert _train(shards, tmp_path, "--verbose") == 0
    captured = capsys.readouterr()
    assert "[step " in captured.out + captured.err


# The process group is checked by a hook that runs after everything the program itself does at exit.
END_OF_PROCESS = """
import atexit, sys
import torch.distributed as dist
from mmlnb_dist import cli

command = cli.main


def main():  # the check is an exit handler the command registers, as MLflow's are: console() runs them all
    atexit.register(lambda: print(f"process group at exit: {'alive' if dist.is_initialized() else 'ended'}"))
    return command()


cli.main = main
sys.argv = ["mmlnb-dist", *sys.argv[1:]]
cli.console()  # what `python -m mmlnb_dist.cli` runs (torchrun, the deepspeed launcher: launch/)
"""


def test_a_command_ends_its_process_group_before_the_process_exits(shards, tmp_path):
    """Not left to the interpreter's teardown: on a GPU, NCCL then prints "destroy_process_group() was not called
    before program exit" under every run, and each rank tears its groups down in its own order."""
    proc = subprocess.run([sys.executable, "-c", END_OF_PROCESS, "train", "--config", str(CPU_DEMO),
                           f"data.shards={shards}", f"run.output_dir={tmp_path}", "run.name=ends",
                           "tracking.backends=[stdout]", "data.loader.num_workers=0", "data.loader.image_size=32",
                           "train.epochs=1", "fusion.curriculum.phases=[{start_epoch: 0}]",
                           "fusion.curriculum.ramp_start=0", "fusion.curriculum.ramp_end=1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "process group at exit: ended" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_the_installed_program_is_the_one_that_ends_the_process_group():
    from importlib.metadata import entry_points

    from mmlnb_dist.cli import console

    (program,) = entry_points(group="console_scripts", name="mmlnb-dist")
    assert program.load() is console, program.value

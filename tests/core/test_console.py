"""The console of a training command shows one line per epoch (issue 13): the stdout backend's per-step metric
records go to `<run_dir>/metrics.jsonl` and the log (DEBUG), and reach the console only with `--verbose`."""
from __future__ import annotations

import json
import re

import pytest

from mmlnb_dist.cli import main

from support.fusion import CPU_DEMO, make_shards

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
    records = [json.loads(line) for line in (tmp_path / "console" / "metrics.jsonl").read_text().splitlines()]
    steps = sorted({r["step"] for r in records if "train/loss" in r})
    assert len(steps) > EPOCHS  # log_every=1: every optimizer step is recorded, not only the epochs


def test_verbose_flag_shows_the_step_records_on_the_console(shards, tmp_path, capsys):
    assert _train(shards, tmp_path, "--verbose") == 0
    captured = capsys.readouterr()
    assert "[step " in captured.out + captured.err

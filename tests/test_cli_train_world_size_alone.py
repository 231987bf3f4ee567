"""`train --world-size 4` without `--print-deepspeed-config` trained on one process: the option was read by the
DeepSpeed-config printout only and dropped without a word (a run's world size is its launcher's). It is refused,
naming the launchers, before any work."""
from __future__ import annotations

from support.cli import run_cli


def test_world_size_without_the_printout_is_refused(tmp_path):
    code, _, err = run_cli(["train", "--world-size", "4", f"run.output_dir={tmp_path}", "run.name=r"])
    assert code == 2, err
    assert "--world-size is read with --print-deepspeed-config only" in err and "torchrun" in err, err
    assert not (tmp_path / "r").exists()


def test_world_size_with_the_printout_splits_the_batch(capsys):
    import json

    code, out, err = run_cli(["train", "--print-deepspeed-config", "--world-size", "4", "train.global_batch_size=32",
                              "distributed.micro_batch_per_gpu=4"])
    assert code == 0, err
    printed = json.loads(out)
    assert (printed["train_batch_size"], printed["train_micro_batch_size_per_gpu"],
            printed["gradient_accumulation_steps"]) == (32, 4, 2)

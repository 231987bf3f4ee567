"""Out of GPU (or host) memory under a command is one line naming what ran out and the settings that lower the
memory that command needs, not a traceback from inside torch; the exit code is 1. The settings named exist (the
message is checked against the config's keys)."""
from __future__ import annotations

import re

import pytest
import torch

from mmlnb_dist.cli import main

from support.cli import run_cli

CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.64 GiB"


def _named_keys(text: str):
    return set(re.findall(r"\b((?:train|distributed|vlm|data)\.[a-z_.]+[a-z])", text))


@pytest.mark.parametrize("error", [torch.OutOfMemoryError(CUDA_OOM),
                                   RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't "
                                                "allocate memory: you tried to allocate 68719476736 bytes")])
def test_train_out_of_memory_names_the_settings_that_lower_a_steps_memory(monkeypatch, error):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core import recipe

    def oom(*args, **kwargs):
        raise error

    monkeypatch.setattr(recipe, "run", oom)
    code, _, err = run_cli(["train", "--config", "cpu-demo"])
    assert code == 1, err
    assert err.startswith("mmlnb-dist train: error: out of memory (") and "Traceback" not in err, err
    keys = _named_keys(err)
    assert {"distributed.micro_batch_per_gpu", "distributed.zero_stage"} <= keys, err
    cfg = load_config("cpu-demo")
    for key in keys:  # every setting the message names is a real one
        section, *rest = key.split(".")
        node = getattr(cfg, section)
        for part in rest:
            node = getattr(node, part)


def test_describe_out_of_memory_names_the_generation_batch(monkeypatch, tmp_path):
    from mmlnb_dist.recipes.vlm import describe

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr(describe, "run_describe", oom)
    code, _, err = run_cli(["describe", "--config", "cpu-demo", "--shards", str(tmp_path),
                            "--out", str(tmp_path / "o")])
    assert code == 1 and "vlm.generation.batch_size" in err and "Traceback" not in err, err


def test_other_runtime_errors_are_not_taken_for_memory(monkeypatch):
    from mmlnb_dist.core import recipe

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(recipe, "run", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["train", "--config", "cpu-demo"])

"""fp16 needs a GPU: DeepSpeed has no fp16 on the CPU and said so ("ValueError: Type fp16 is not supported on your
device.", a traceback) only once the model and the engine were being built, and in a pipeline only at its train
stage, after the data and VLM stages. Refused before any work, naming the key; bf16 and fp32 run on the CPU."""
from __future__ import annotations

import pytest
import torch

from support.cli import run_cli

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal (fp16 runs on a GPU)")


def test_train_in_fp16_on_the_cpu_is_refused_before_the_run_folder_exists(tmp_path):
    from support.clip import CLIP_PROFILE, caption_shards

    shards = caption_shards(tmp_path, n=24)
    code, _, err = run_cli(["train", "--config", str(CLIP_PROFILE), f"data.shards={shards}",
                      f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]",
                      "distributed.precision=fp16"])
    assert code == 2 and "distributed.precision: fp16 needs a GPU" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_a_pipeline_in_fp16_on_the_cpu_is_refused_before_its_first_stage(tmp_path):
    code, _, err = run_cli(["pipeline", "--synthetic", "--config", "cpu-demo", f"run.output_dir={tmp_path / 'runs'}",
                      f"data.synth_dir={tmp_path / 'src'}", f"data.shards={tmp_path / 'shards'}",
                      "tracking.backends=[stdout]", "distributed.precision=fp16"])
    assert code == 2 and "distributed.precision: fp16 needs a GPU" in err, err
    assert not (tmp_path / "src").exists()

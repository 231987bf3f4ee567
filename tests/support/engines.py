"""Shared stand-ins for a DeepSpeed engine in checkpoint tests (no tests here)."""
from __future__ import annotations


class SingleProcessLayout:
    """The layout questions `CheckpointManager.save` asks of an engine, answered as one fp32 process without ZeRO."""

    dp_world_size = 1

    def bfloat16_enabled(self):
        return False

    def fp16_enabled(self):
        return False

    def zero_optimization_stage(self):
        return 0

    def train_micro_batch_size_per_gpu(self):
        return 1

    def gradient_accumulation_steps(self):
        return 1

"""Shared stand-ins for a DeepSpeed engine and a training loader in checkpoint and loop tests (no tests here)."""
from __future__ import annotations

import torch


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


class EpochLoader(list):
    """A list of batches with the loader surface the training loop calls (`set_epoch`, `resume_from`)."""

    def set_epoch(self, epoch):
        self.epoch = epoch

    def resume_from(self, position):
        self.position = position


class AdamEngine:
    """The engine surface the training loop uses, around a plain Adam. With `record`, every step's RNG draw (where
    the generator stands at that forward: the epoch's seed decides it), outputs and loss are kept in `calls`."""

    def __init__(self, model, record: bool = False):
        self.module = model
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.record = record
        self.calls = []

    def __call__(self, **inputs):
        draw = float(torch.rand(())) if self.record else None
        out = self.module(**inputs)
        if self.record:
            self.calls.append({"draw": draw, "out": {k: v.detach().clone() for k, v in out.items() if v is not None}})
        return out

    def backward(self, loss):
        if self.record:
            self.calls[-1]["loss"] = float(loss.detach())
        loss.backward()

    def step(self):
        self.opt.step()
        self.opt.zero_grad()

    def train(self):
        self.module.train()

    def was_step_applied(self):
        return True

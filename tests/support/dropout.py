"""Spying on a run's random numbers: what the first dropout draw of training sees."""
from __future__ import annotations

from typing import Dict, Iterable

import torch


def record_first_dropout_draw(dropouts: Iterable[torch.nn.Module], seen: Dict[str, object]) -> None:
    """Store torch's CPU RNG state in `seen["rng"]` just before the first training-mode forward of any of
    `dropouts` (the state its mask is drawn from)."""

    def first_draw(module, inputs):
        if module.training and "rng" not in seen:
            seen["rng"] = torch.get_rng_state()

    for module in dropouts:
        module.register_forward_pre_hook(first_draw)

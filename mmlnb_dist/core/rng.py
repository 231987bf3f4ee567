"""Every random generator a training step may draw from, captured and put back: what a checkpoint keeps per rank so
that a resumed run draws the same random numbers as an uninterrupted one (`core.checkpoint`, `recipes.epochs`)."""
from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import torch


def rng_state() -> Dict[str, Any]:
    """Every generator a step may draw from: Python, NumPy, torch CPU and (on GPUs) the CUDA generator of this
    rank's device (`core.distributed` makes it the current one). Not every visible device's: how many a rank sees
    depends on the launcher (torchrun: the node's; Slurm's per-task binding: its own), and a resume may see others."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):  # saved as every visible device's: this rank's device's, by its index
            device = torch.cuda.current_device()
            cuda = cuda[device] if device < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)

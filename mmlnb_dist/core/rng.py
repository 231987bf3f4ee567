"""Every random generator a training step may draw from, captured and put back: what a checkpoint keeps per rank so
that a resumed run draws the same random numbers as an uninterrupted one (`core.checkpoint`, `recipes.epochs`)."""
from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import torch


def rng_state() -> Dict[str, Any]:
    """Every generator a step may draw from: Python, NumPy, torch CPU and (on GPUs) every CUDA device's."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

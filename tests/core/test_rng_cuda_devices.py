"""A checkpoint keeps each rank's CUDA generator, the one of the GPU the rank trains on, not every visible device's.
It kept `torch.cuda.get_rng_state_all()`: one state per device the process could see, put back device by device. A
run saved where every rank saw the node's 8 GPUs (torchrun) and resumed where each rank sees fewer (another node
size, Slurm binding one GPU per task) failed on load (torch's `default_generators[idx]`: IndexError); saved with
one GPU visible per rank and resumed with all visible, every rank but rank 0 kept a fresh generator on its own GPU
(set on device 0 instead): a "same layout" resume drew other dropout masks. No GPU here: torch.cuda's generator
calls are stood in for with torch's semantics (one generator per visible device, indexed from 0)."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core import rng


class Generators:
    """torch.cuda's generator functions over `visible` devices, this process on device `current`."""

    def __init__(self, visible: int, current: int):
        self.states = [torch.tensor([100 + d], dtype=torch.uint8) for d in range(visible)]
        self.current = current

    def _index(self, device):
        index = self.current if device in ("cuda", None) else int(device)
        self.states[index]  # IndexError past the visible devices, as torch's `default_generators[idx]`
        return index

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(self.states))
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": self.states[self._index(device)].clone())
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in self.states])

        def set_state(state, device="cuda"):
            self.states[self._index(device)] = state.clone()

        monkeypatch.setattr(torch.cuda, "set_rng_state", set_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                            lambda states: [set_state(s, i) for i, s in enumerate(states)])
        return self


def test_a_rank_saved_seeing_eight_gpus_resumes_seeing_one(monkeypatch):
    saved_on = Generators(visible=8, current=3).install(monkeypatch)
    state = rng.rng_state()
    resumed_on = Generators(visible=1, current=0).install(monkeypatch)
    rng.set_rng_state(state)
    assert resumed_on.states[0].item() == 103 == saved_on.states[3].item()


def test_a_rank_saved_seeing_one_gpu_resumes_on_its_gpu_among_eight(monkeypatch):
    Generators(visible=1, current=0).install(monkeypatch)
    state = rng.rng_state()
    resumed_on = Generators(visible=8, current=3).install(monkeypatch)
    rng.set_rng_state(state)
    assert [s.item() for s in resumed_on.states] == [100, 101, 102, 100, 104, 105, 106, 107]


@pytest.mark.parametrize("visible, current, restored", [(8, 3, 103), (2, 1, 101)])
def test_a_checkpoint_with_every_visible_devices_state_restores_this_ranks_own(monkeypatch, visible, current,
                                                                               restored):
    """Checkpoints written before keep the list of every device's state: the rank's own device's is taken from it."""
    Generators(visible=8, current=0).install(monkeypatch)
    state = {**rng.rng_state(), "cuda": [torch.tensor([100 + d], dtype=torch.uint8) for d in range(8)]}
    resumed_on = Generators(visible=visible, current=current).install(monkeypatch)
    resumed_on.states[current] = torch.tensor([0], dtype=torch.uint8)
    rng.set_rng_state(state)
    assert resumed_on.states[current].item() == restored

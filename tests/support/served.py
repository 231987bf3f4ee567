"""Shared helpers of the exported-model tests (no tests here): random PNG patches and the pixels an export should
see for them, normalised in numpy (an independent reference for the served model's preprocessing)."""
from __future__ import annotations

import io
from typing import List, Sequence

import numpy as np
import torch


def random_pngs(n: int, size: int, seed: int = 0) -> List[bytes]:
    """`n` random RGB PNGs of `size` x `size` px."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3)).astype(np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def normalised_pixels(pngs: Sequence[bytes], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The PNGs as an N x 3 x H x W float tensor in [0, 1], normalised with `mean` and `std` per channel."""
    from PIL import Image

    x = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), np.float32) / 255.0 for b in pngs])
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

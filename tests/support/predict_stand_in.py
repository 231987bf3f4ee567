"""A stand-in for a served model, for `predict` tests that need no training, and the inputs they predict."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image


class Meta:
    """The part of MLflow's model metadata `predict` reads."""

    def __init__(self, metadata, uuid="uuid-1"):
        self.metadata, self.model_uuid = metadata, uuid


class StandIn:
    """A served model's shape: a frame of base64 images and descriptions in, one row per image out (probabilities
    from the image's bytes and the description's length, so a row tells what it was made from; the description
    echoed). Raises KeyboardInterrupt (a Ctrl-C) at its `stop_at`-th call; records the keys it was given."""

    def __init__(self, metadata=None, stop_at=None):
        self.metadata = Meta(metadata or {})
        self.stop_at, self.calls, self.seen = stop_at, 0, []

    def predict(self, frame, params=None):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.seen.extend(frame["key"])
        p = [((len(b) + 7 * len(t)) % 97) / 97 for b, t in zip(frame["image"], frame["description"])]
        return pd.DataFrame({"key": frame["key"], "label": ["A" if x >= 0.5 else "B" for x in p], "prob_A": p,
                             "prob_B": [1 - x for x in p], "slide_id": frame["slide_id"],
                             "description": frame["description"]})


def images_with_a_broken_one(folder: Path, readable: Sequence[str]) -> Path:
    """PNGs of different sizes named `readable` in `folder`, and `b_broken.png`, which is not an image."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(readable):
        Image.fromarray(rng.integers(0, 255, (8 + i, 8 + 2 * i, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    (folder / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return folder

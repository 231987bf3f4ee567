"""LitData dataset of benchmarks/peers/litdata_run.py, in its own module so that LitData's spawned loader workers
can unpickle it (they import it by name; litdata itself must already be on sys.path)."""
from __future__ import annotations

from litdata import StreamingDataset

from peers.loaders import sample_array  # noqa: E402 (after litdata)


class StreamedImages(StreamingDataset):
    """Our loader's per-sample work on each streamed item: (uint8 [S, S, 3], class index)."""

    def __init__(self, *args, size: int = 224, **kwargs):
        super().__init__(*args, **kwargs)
        self.size = size

    def __getitem__(self, index):
        item = super().__getitem__(index)
        return sample_array(item["image"], self.size), item["label"]

"""The loader's streaming peers on the same images (issue 15, item 1), for benchmarks/data_throughput.py.

Every peer gets the same stored JPEG bytes (the tar members of our shard set, built with
`image_format=original`), the same per-sample work as our loader (`sample_array`: `decode_image` with DCT
scaling to the training size, shorter side resize + centre crop, uint8 `[S, S, 3]`), the same batch size and
worker count, and the same per-batch normalisation in the main process. So the rows compare loader machinery,
not decoders:

- `webdataset_loader`: a plain `webdataset.WebDataset` pipeline over our shards (shuffle, decode, to_tuple,
  map, batched, `WebLoader`), as its docs write one; `idiomatic=True` decodes with `.decode("pil")` (full
  size) and torchvision transforms instead, the way most users write it;
- LitData: `benchmarks/peers/litdata_run.py`, run in a subprocess that adds a separate package folder to
  `sys.path` (litdata is never installed into the project's venv);
- `ceiling_pool`: a process pool of the same size doing only decode + transform, nothing shipped back.
"""
from __future__ import annotations

import io
import multiprocessing as mp
import tarfile
import time
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import numpy as np

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def sample_array(data: bytes, size: int = 224) -> np.ndarray:
    """Our loader's per-sample image work (`ImageSamplePreprocess.decode`'s image part)."""
    from mmlnb_dist.data.images import ImageTransform, decode_image

    return ImageTransform(size).to_array(decode_image(data, size))


def normaliser(size: int) -> Callable:
    """uint8 `[B, S, S, 3]` -> normalised float `[B, 3, S, S]` (our loader's `finalize`)."""
    from mmlnb_dist.data.images import ImageTransform

    return ImageTransform(size, mean=IMAGENET[0], std=IMAGENET[1]).normalise_batch


def keep_uint8(batch):
    """A finalize that leaves the batch as the workers shipped it (uint8), as when the device normalises."""
    return batch


class fused_finalize:
    """Normalisation as one multiply-add on the float batch (x * 1/(255 std) - mean/std) instead of three
    passes (/255, -mean, /std): the lever measured against `ImageTransform.normalise_batch`."""

    def __init__(self, size: int):
        import torch

        mean = torch.tensor(IMAGENET[0]).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET[1]).view(1, 3, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std), -mean / std

    def __call__(self, batch):
        import torch

        t = batch["image"].permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        batch["image"] = t.mul_(self.scale).add_(self.shift)
        return batch


def shard_images(shard_paths: Sequence[Path]) -> List[Tuple[str, bytes, int]]:
    """(key, image bytes, class index) of every sample, in shard order, read with tarfile."""
    out = {}
    for path in shard_paths:
        with tarfile.open(path) as tar:
            for m in tar:
                if not m.isfile():
                    continue
                key, ext = m.name.split(".", 1)
                data = tar.extractfile(m).read()
                entry = out.setdefault(key, {})
                entry[ext] = data
    rows = []
    for key, e in out.items():
        img = next(e[x] for x in ("jpg", "jpeg", "png") if x in e)
        rows.append((key, img, int(e["cls"].decode("ascii"))))
    return rows


def _collate(samples):
    import torch

    images, labels = zip(*samples)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


def webdataset_loader(shard_paths: Sequence[Path], batch: int, workers: int, size: int = 224,
                      shuffle: int = 500, idiomatic: bool = False):
    """A plain WebDataset pipeline; yields (images, labels) with images normalised in the main process."""
    import webdataset as wds

    urls = [str(p) for p in shard_paths]
    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False).shuffle(shuffle)
    if idiomatic:
        from torchvision import transforms as T

        tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(*IMAGENET)])
        ds = ds.decode("pil").to_tuple("jpg;jpeg;png", "cls").map_tuple(tf, int).batched(batch)
        return wds.WebLoader(ds, batch_size=None, num_workers=workers)
    ds = (ds.decode(wds.handle_extension("jpg jpeg png", lambda b: sample_array(b, size)))
          .to_tuple("jpg;jpeg;png", "cls").map_tuple(None, lambda c: int(c)).batched(batch, collation_fn=_collate))
    norm = normaliser(size)
    return ((norm(x), y) for x, y in wds.WebLoader(ds, batch_size=None, num_workers=workers))


def count_batches(loader) -> int:
    return sum(len(y) for _, y in loader)


# ----------------------------------------------------------------------------------------------------------
# (e) the ceiling: decode + transform in a pool of the same size, nothing else
# ----------------------------------------------------------------------------------------------------------
_POOL_IMAGES: List[bytes] = []


def _pool_init(images: List[bytes]) -> None:
    import torch

    torch.set_num_threads(1)  # like a DataLoader worker
    _POOL_IMAGES[:] = images


def _pool_chunk(bounds: Tuple[int, int, int]) -> int:
    start, stop, size = bounds
    for i in range(start, stop):
        sample_array(_POOL_IMAGES[i], size)
    return stop - start


def ceiling_pool(images: List[bytes], batch: int, workers: int, size: int = 224) -> float:
    """Samples/s of `workers` processes doing only decode + transform in batch-sized chunks (pool start and a
    warm-up chunk per process excluded)."""
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_pool_init, initargs=(images,)) as pool:
        pool.map(_pool_chunk, [(0, 1, size)] * workers)
        chunks = [(i, min(i + batch, len(images)), size) for i in range(0, len(images), batch)]
        t = time.perf_counter()
        n = sum(pool.imap_unordered(_pool_chunk, chunks))
        return n / (time.perf_counter() - t)


def stack_cost(batch: int, size: int = 224, repeats: int = 50) -> Tuple[float, float]:
    """(ms to np.stack a batch of uint8 images, ms to write them into a preallocated batch array): the saving
    that decoding straight into a preallocated batch would bring."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(batch)]
    t = time.perf_counter()
    for _ in range(repeats):
        np.stack(arrays)
    stacked = (time.perf_counter() - t) / repeats * 1e3
    out = np.empty((batch, size, size, 3), np.uint8)
    t = time.perf_counter()
    for _ in range(repeats):
        for i, a in enumerate(arrays):
            out[i] = a
    into = (time.perf_counter() - t) / repeats * 1e3
    return stacked, into


def jpeg_bytes(arr: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()

"""Image decoding and transforms for the shard loader: PIL decode, resize + centre crop, seeded flips/rot90,
ImageNet normalisation.

Augmentation draws from a generator seeded by (seed, epoch, sample key), never from global state, so a sample
gets the same augmentation in the same epoch whichever rank or worker reads it, and a different one next epoch.
"""
from __future__ import annotations

import io
import zlib
from typing import Optional

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sample_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The augmentation generator of one sample in one epoch."""
    return np.random.default_rng([seed, epoch, zlib.crc32(key.encode("utf-8"))])


def decode_image(data: bytes, size: Optional[int] = None):
    """Decode image bytes to an RGB PIL image (never unpickles). With `size`, JPEG decoding may scale down by
    a power of two in the DCT domain while staying at least `size` on each side (much faster for large images)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    if size is not None:
        img.draft("RGB", (size, size))
    return img.convert("RGB")


class ImageTransform:
    """Resize the shorter side to `image_size`, centre-crop square, optionally flip/rotate, normalise.

    Returns float32 `[3, S, S]` normalised with the ImageNet mean and std.
    """

    def __init__(self, image_size: int, augment: bool = False,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        self.image_size = image_size
        self.augment = augment
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def to_array(self, img, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """Geometric part: PIL image -> uint8 `[S, S, 3]` (resized, cropped, augmented)."""
        from PIL import Image

        s = self.image_size
        w, h = img.size
        if (w, h) != (s, s):
            scale = s / min(w, h)
            img = img.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s))
        arr = np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy needs one
        if self.augment and rng is not None:
            # Histology has no canonical orientation: the 8 dihedral transforms are all label-preserving.
            if rng.random() < 0.5:
                arr = arr[:, ::-1]
            k = int(rng.integers(4))
            if k:
                arr = np.rot90(arr, k)
        return np.ascontiguousarray(arr)

    def normalise(self, arr: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
        return t.sub_(self.mean).div_(self.std)

    def normalise_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 `[B, S, S, 3]` -> normalised float32 `[B, 3, S, S]` in one vectorised pass."""
        t = batch.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
        return t.sub_(self.mean).div_(self.std)

    def __call__(self, img, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        return self.normalise(self.to_array(img, rng))

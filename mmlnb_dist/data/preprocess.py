"""How a raw shard sample becomes tensors: injected into the loader by the recipe (as open_clip injects its
preprocess functions), so the loader knows no label kind, image size or normalisation.

A preprocess object has three methods:

    decode(raw, ctx) -> dict      in the loader's workers; raise ValueError(reason) for a bad sample
    collate(samples) -> dict      in the workers: a list of decoded samples -> one batch
    finalize(batch) -> dict       in the main process, once per batch (e.g. uint8 -> normalised float; on the
                                  training device when one is given, so only uint8 crosses to it)

`ImageSamplePreprocess` covers image classification with optional text: the image (resized, cropped, seeded
dihedral augmentation), a label from a `LabelCodec` (class index today, multi-hot for multi-label recipes),
the description and the slide id. Objects are plain classes so they pickle into worker processes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from .images import ImageTransform, decode_image, image_member, sample_rng, undecodable
from .stain_augment import StainAugment, StainAugmentConfig


@dataclass(frozen=True)
class SampleContext:
    """What decoding may depend on besides the sample: the seed and epoch (augmentation) and the mode."""

    seed: int
    epoch: int
    train: bool

    def rng(self, key: str) -> np.random.Generator:
        return sample_rng(self.seed, self.epoch, key)


def sample_meta(raw: Dict[str, Any]) -> Dict[str, Any]:
    """The sample's `json` member as a dict ({} when absent or not a JSON object)."""
    if "json" not in raw:
        return {}
    try:
        meta = json.loads(raw["json"])
    except (ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


class ClassIndexLabel:
    """One class per sample, from the `cls` member (an index into the shard set's classes)."""

    def __init__(self, classes: Sequence[str]):
        self.classes = list(classes)

    def __call__(self, raw: Dict[str, Any], meta: Dict[str, Any]) -> int:
        try:
            cls = int(raw["cls"].decode("ascii"))
        except (KeyError, ValueError, UnicodeDecodeError):
            raise ValueError(f"missing or invalid cls {raw.get('cls')!r}") from None
        if not 0 <= cls < len(self.classes):
            raise ValueError(f"unknown class index {cls} (classes: {', '.join(self.classes)})")
        return cls


class MultiHotLabel:
    """Several labels per sample, from `json["labels"]` (names of the vocabulary), as a float multi-hot vector."""

    def __init__(self, vocabulary: Sequence[str], field: str = "labels"):
        self.index = {name: i for i, name in enumerate(vocabulary)}
        self.field = field

    def __call__(self, raw: Dict[str, Any], meta: Dict[str, Any]) -> np.ndarray:
        names = meta.get(self.field)
        if not isinstance(names, list) or not names:
            raise ValueError(f"json member has no '{self.field}' list")
        unknown = [n for n in names if n not in self.index]
        if unknown:
            raise ValueError(f"unknown labels {unknown} (vocabulary has {len(self.index)})")
        hot = np.zeros(len(self.index), dtype=np.float32)
        hot[[self.index[n] for n in names]] = 1.0
        return hot


def add_text_and_ids(out: Dict[str, Any], raw: Dict[str, Any], meta: Dict[str, Any], text: bool) -> Dict[str, Any]:
    """A decoded sample's caption or description (`txt`, "" when absent; only when `text`), key and slide id."""
    if text:
        out["text"] = raw["txt"].decode("utf-8", errors="replace") if "txt" in raw else ""
    out["key"] = raw["__key__"]
    out["slide_id"] = meta.get("slide_id")
    return out


def collate_samples(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack arrays into tensors, ints into a long tensor, floats into a float tensor; keep the rest as lists."""
    batch: Dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        first = values[0]
        if isinstance(first, np.ndarray):
            batch[key] = torch.from_numpy(np.stack(values))
        elif isinstance(first, (bool, int, np.integer)):
            batch[key] = torch.tensor(values, dtype=torch.long)
        elif isinstance(first, (float, np.floating)):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = values
    return batch


class ImageSamplePreprocess:
    """Image + label (+ description, slide id) samples for classification recipes.

    Batches hold `image` (float32 [B,3,S,S] normalised with `mean`/`std`), `label` (from the codec: long [B]
    or float [B,K]), `text` (list of str, "" when absent, if `text`), `key` and `slide_id` (lists).
    Workers ship uint8 pixels; the main process normalises whole batches (4x less inter-process traffic), on
    `device` when one is given (the training device: the batch arrives there normalised).
    With `augment`, training images are flipped / rotated and then, when `stain` is given and not `none`,
    stain-jittered, all from the sample's own generator (`SampleContext.rng`).
    """

    def __init__(self, image_size: int, label, *, augment: bool, mean: Sequence[float], std: Sequence[float],
                 text: bool = True, stain: Optional[StainAugmentConfig] = None,
                 device: Optional[torch.device] = None):
        self.transform = ImageTransform(image_size, augment=augment, mean=mean, std=std)
        # Where `finalize` normalises. On an accelerator the uint8 batch is copied there and normalised there:
        # a quarter of the bytes of float32 cross the bus, and the main process does no float work that would
        # take CPU time from the decoding workers (BENCHMARKS.md "Loader against peers": (b) against (b-u8)).
        self.device = torch.device(device) if device is not None else None
        self.stain = StainAugment(stain or StainAugmentConfig())
        self.label = label
        self.text = text

    def decode(self, raw: Dict[str, Any], ctx: SampleContext) -> Dict[str, Any]:
        meta = sample_meta(raw)
        label = self.label(raw, meta) if self.label is not None else None
        ext = image_member(raw)
        if ext is None:
            raise ValueError("no image member")
        key = raw["__key__"]
        try:
            img = decode_image(raw[ext], self.transform.image_size)
            rng = ctx.rng(key) if (self.transform.augment and ctx.train) else None
            image = self.transform.to_array(img, rng)
            if rng is not None and self.stain.active:  # drawn after the geometric draws: those stay as before
                image = self.stain(image, rng)
        except Exception as err:  # PIL raises many types for corrupt data; all mean "undecodable"
            raise ValueError(undecodable(err)) from None
        out: Dict[str, Any] = {"image": image}
        if label is not None:
            out["label"] = label
        return add_text_and_ids(out, raw, meta, self.text)

    def collate(self, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
        return collate_samples(samples)

    def finalize(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        image = batch["image"]
        if self.device is not None and self.device.type != "cpu":
            image = image.to(self.device, non_blocking=True)
        batch["image"] = self.transform.normalise_batch(image)
        return batch

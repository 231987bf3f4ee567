"""The multi-label classifier: CLIP towers, a fusion of their embeddings, an MLP head (one logit per label).

    logits = head(concat(image_embed, text_embed))     fusion concat (the seed's), or image + text (sum), or
                                                        PRMF(image, text) (prmf: MMLNB's confidence block), or
                                                        one tower alone (image_only / text_only baselines)
    logits = logit_scale.exp() * cos(image_embed, text_embed(prompt(label)))    zero_shot: no head, nothing trains

Either side may come from models.encoders instead of CLIP (`image_encoder=resnet50`, `text_encoder=<BERT>`:
branches.py), the seed's baselines; `towers` is None when no CLIP tower is used.
The model knows nothing of ranks, devices or DeepSpeed. Towers whose blocks are all frozen run without
gradients (nothing to train there, and no activations to keep).
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...core.errors import ConfigError
from ...models.fusion_blocks import PRMF
from .config import ClipModelConfig
from .towers import CLIP_MEAN, CLIP_STD, Towers, build_towers


def mlp_head(in_dim: int, widths: List[int], out_dim: int, dropout: float) -> nn.Sequential:
    layers: List[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ClipMultiLabel(nn.Module):
    """Image side (CLIP's image tower or `image_branch`), text side (CLIP's text tower or `text_branch`), fusion,
    head. `towers` is None when neither CLIP tower is used (the ResNet / BERT baselines)."""

    def __init__(self, towers: Optional[Towers], cfg: ClipModelConfig, num_labels: int,
                 classes: Optional[List[str]] = None, image_branch: Optional[nn.Module] = None,
                 text_branch: Optional[nn.Module] = None):
        super().__init__()
        self.towers = towers
        self.image_branch = image_branch
        self.text_branch = text_branch
        self.fusion = cfg.fusion
        self.num_labels = num_labels
        self.prompts: List[str] = []
        self.head: Optional[nn.Sequential] = None
        self.fuse: Optional[PRMF] = None
        if cfg.fusion == "zero_shot":
            if towers is None or image_branch is not None or text_branch is not None:
                raise ConfigError("clip.model.fusion: zero_shot compares CLIP's own image and text embeddings; "
                                  "set clip.model.image_encoder=clip and clip.model.text_encoder=clip")
            self.prompts = zero_shot_prompts(cfg.zero_shot_prompt, classes, num_labels)
            check_prompts_differ(towers, self.prompts, classes)
            towers.set_unfrozen_blocks(0)  # the baseline is CLIP as it is: nothing trains
            return
        image_dim = self._image_side().embed_dim if self.uses_image else 0
        text_dim = self._text_side().embed_dim if self.uses_text else 0
        width = image_dim + text_dim if cfg.fusion in ("concat", "image_only", "text_only") else text_dim
        if cfg.fusion == "sum" and image_dim != text_dim:
            raise ConfigError(f"clip.model.fusion: sum needs equal image and text widths, but the image branch "
                              f"gives {image_dim} and the text branch {text_dim}; use concat or prmf")
        if cfg.fusion == "prmf":
            # trained with the head (its optimizer group): it is part of the classifier, not of the towers
            self.fuse = PRMF(image_dim, text_dim, cfg.prmf_confidence, cfg.prmf_hidden)
            width = self.fuse.out_dim
        self.head = mlp_head(width, list(cfg.head_widths), num_labels, cfg.head_dropout)

    def _image_side(self):
        return self.image_branch if self.image_branch is not None else self.towers

    def _text_side(self):
        return self.text_branch if self.text_branch is not None else self.towers

    @property
    def image_mean(self):
        """The normalisation the image branch expects (the preprocess and the export use it)."""
        side = self._image_side()
        return side.image_mean if side is not None else CLIP_MEAN

    @property
    def image_std(self):
        side = self._image_side()
        return side.image_std if side is not None else CLIP_STD

    @property
    def uses_image(self) -> bool:
        return self.fusion != "text_only"

    @property
    def uses_text(self) -> bool:
        """Whether the model reads the captions (zero-shot reads its prompts instead)."""
        return self.fusion not in ("image_only", "zero_shot")

    def param_groups(self, *, tower_lr: float, head_lr: float) -> List[Dict]:
        """Optimizer groups with their own peak lr: the unfrozen tower / encoder blocks, and the head (with PRMF).
        Frozen parameters stay out of the optimizer (they never change; no Adam state for them). None at all when
        nothing trains."""
        if self.head is None:
            return []
        encoders = [m for m in (self.towers, self.image_branch, self.text_branch) if m is not None]
        towers = [p for m in encoders for p in m.parameters() if p.requires_grad]
        groups = [{"name": "towers", "params": towers, "lr": tower_lr}] if towers else []
        head = list(self.head.parameters()) + (list(self.fuse.parameters()) if self.fuse is not None else [])
        return groups + [{"name": "head", "params": head, "lr": head_lr}]

    @staticmethod
    def _grad(modules: nn.Module):
        trains = any(p.requires_grad for p in modules.parameters())
        return contextlib.nullcontext() if trains else torch.no_grad()

    def embeddings(self, pixel_values: Optional[torch.Tensor] = None, input_ids: Optional[torch.Tensor] = None,
                   attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The fused embedding the head reads."""
        image = text = None
        if self.uses_image:
            side = self._image_side()
            with self._grad(side if side is not self.towers else self.towers.image_tower):
                image = side.encode_image(pixel_values)
        if self.uses_text:
            side = self._text_side()
            with self._grad(side if side is not self.towers else self.towers.text_tower):
                text = side.encode_text(input_ids, attention_mask)
        if self.fusion == "concat":
            return torch.cat([image, text.to(image.dtype)], dim=-1)
        if self.fusion == "sum":
            return image + text
        if self.fuse is not None:
            dtype = self.fuse.proj.weight.dtype
            fused, _alpha = self.fuse(image.to(dtype), text.to(dtype))
            return fused
        return image if image is not None else text

    def inputs(self, pixel_values: Optional[torch.Tensor], texts: Optional[List[str]],
               device: Optional[torch.device] = None) -> Dict[str, torch.Tensor]:
        """The keyword arguments of `forward` for a batch of normalised images and captions: only what the model
        uses (a text-only model gets no pixels), tokenised by its own tokenizer, on `device`."""
        device = device or next(self.parameters()).device
        out: Dict[str, torch.Tensor] = {}
        if self.uses_image:
            out["pixel_values"] = pixel_values.to(device, next(self.parameters()).dtype)
        if self.uses_text:
            out.update({k: v.to(device) for k, v in self._text_side().tokenize(list(texts)).items()})
        return out

    def zero_shot_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """logits[b, l] = logit_scale.exp() * cos(image_b, text(prompt_l)) (CLIP's zero-shot classifier)."""
        image = F.normalize(self.towers.encode_image(pixel_values).float(), dim=-1)
        device = pixel_values.device
        prompts = {k: v.to(device) for k, v in self.towers.tokenize(self.prompts).items()}
        text = F.normalize(self.towers.encode_text(**prompts).float(), dim=-1)
        return self.towers.logit_scale.float().exp() * image @ text.T

    def forward(self, pixel_values: Optional[torch.Tensor] = None, input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.head is None:
            with torch.no_grad():
                return self.zero_shot_logits(pixel_values)
        fused = self.embeddings(pixel_values, input_ids, attention_mask)
        return self.head(fused.to(self.head[0].weight.dtype))


def zero_shot_prompts(template: str, classes: Optional[List[str]], num_labels: int) -> List[str]:
    """One prompt per label; the template's `{label}` placeholder is checked by ClipModelConfig when it loads."""
    if classes is None or len(classes) != num_labels:
        raise ValueError(f"fusion=zero_shot needs the {num_labels} label names (classes), got {classes!r}")
    return [template.replace("{label}", name) for name in classes]


def check_captions(cfg: ClipModelConfig, shards, splits: Optional[List[str]] = None) -> None:
    """A ConfigError when the model reads captions (every fusion but image_only and zero_shot) and samples of
    `splits` (default every split: training reads them all; `evaluate` one) of the shard set
    (`data.shardset.ShardSet`) carry none: its text side would read "" for them. The manifest's
    `has_descriptions` says only that SOME sample has one, so the per-shard `num_described` counts are read too (a
    set captioned in part trained and scored its text side on empty strings for the rest, without a word)."""
    plan = branch_plan(cfg)
    if not plan["clip_text"] and not plan["encoder_text"] or cfg.fusion == "zero_shot":
        return  # zero-shot reads its prompts, never the captions
    if shards.has_descriptions:
        missing = {split: (shards.num_samples(split) - n, shards.num_samples(split))
                   for split in (splits if splits is not None else shards.manifest["splits"])
                   if (n := shards.num_described(split)) is not None and n < shards.num_samples(split)}
        if not missing:
            return
        counts = ", ".join(f"{split} {n} of {total}" for split, (n, total) in missing.items())
        listing = ", ".join(f"{name} ({n})" for split in missing for name, n in shards.undescribed_shards(split))
        raise ConfigError(f"clip.model.fusion={cfg.fusion} reads each sample's caption, but samples of data.shards "
                          f"{shards.root} carry none ({counts}; shards, samples without: {listing[:400]}): its "
                          f"text side would read empty text for them. Give every sample a caption (the CSV's "
                          f"caption column) and rebuild the shards, or use an image-only model "
                          f"(clip.model.fusion=image_only)")
    raise ConfigError(f"clip.model.fusion={cfg.fusion} reads each sample's caption, but the samples of data.shards "
                      f"{shards.root} carry none (no `txt` members; built without a caption column): its text side "
                      f"would read empty text. Use an image-only model (clip.model.fusion=image_only), or rebuild the "
                      f"shards with captions (`shards build --task multilabel` with the CSV's caption column)")


def check_prompts_differ(towers: Towers, prompts: List[str], classes: List[str]) -> None:
    """A ConfigError when two labels' prompts are the same tokens to the text tower (cut at its token limit, or
    spelt alike to its tokenizer: the tiny towers' uncased one drops accents): their zero-shot scores would be
    equal for every image, the top-k choosing between them by position."""
    ids = towers.tokenize(prompts)["input_ids"]
    first: Dict[tuple, int] = {}
    same = []
    for i, row in enumerate(ids.tolist()):
        j = first.setdefault(tuple(row), i)
        if j != i:
            same.append(f"'{classes[j]}' and '{classes[i]}'")
    if same:
        raise ConfigError(f"clip.model.zero_shot_prompt: the prompts of labels {'; '.join(same)} are the same "
                          f"{ids.shape[1]} tokens to the text tower, so their zero-shot scores would be equal; "
                          f"raise clip.model.towers.max_length (now {towers.max_length}), shorten the prompt, or "
                          f"rename the labels")


def build_model(cfg: ClipModelConfig, num_labels: int, image_size: int,
                classes: Optional[List[str]] = None) -> ClipMultiLabel:
    """Towers / encoder branches (unfreezing applied) plus head; seed the RNG first for identical weights on every
    rank. `classes` (the label names) are needed by the zero-shot model's prompts."""
    from .branches import build_image_branch, build_text_branch

    if num_labels < 2:
        raise ValueError(f"need at least 2 labels, got {num_labels}")
    plan = branch_plan(cfg)
    # built frozen, then unfrozen on the towers the model runs only (a text_only run on a ResNet image tower);
    # zero-shot trains nothing: its towers' unfreeze_blocks is not applied (nor refused for towers without blocks)
    towers = None
    if plan["clip_image"] or plan["clip_text"]:
        towers = build_towers(cfg.towers.model_copy(update={"unfreeze_blocks": 0}), image_size)
        towers.set_unfrozen_blocks(cfg.towers.unfreeze_blocks if cfg.fusion != "zero_shot" else 0,
                                   sides=tower_sides(plan))
        freeze_unused_tower(towers, plan)
    image_branch = build_image_branch(cfg) if plan["encoder_image"] else None
    text_branch = build_text_branch(cfg) if plan["encoder_text"] else None
    return ClipMultiLabel(towers, cfg, num_labels, classes, image_branch, text_branch)


def branch_plan(cfg: ClipModelConfig) -> Dict[str, bool]:
    """Which image and text branches a config uses: a CLIP tower, an encoder of models.encoders, or neither."""
    image = cfg.fusion != "text_only"
    text = cfg.fusion not in ("image_only", "zero_shot")
    if cfg.fusion == "zero_shot" and (cfg.image_encoder != "clip" or cfg.text_encoder != "clip"):
        raise ConfigError("clip.model.fusion: zero_shot compares CLIP's own image and text embeddings; set "
                          "clip.model.image_encoder=clip and clip.model.text_encoder=clip")
    return {"clip_image": image and cfg.image_encoder == "clip",
            "clip_text": (text and cfg.text_encoder == "clip") or cfg.fusion == "zero_shot",
            "encoder_image": image and cfg.image_encoder != "clip",
            "encoder_text": text and cfg.text_encoder != "clip"}


def branch_summary(cfg: ClipModelConfig) -> str:
    """One line naming what each branch runs and what of it trains, for the run's log (the tower name means
    nothing when neither branch is a CLIP tower)."""
    plan = branch_plan(cfg)
    trains_blocks = cfg.towers.unfreeze_blocks and cfg.fusion != "zero_shot"  # zero-shot trains nothing
    blocks = f"last {cfg.towers.unfreeze_blocks} blocks train" if trains_blocks else "frozen"
    if plan["clip_image"]:
        image = f"CLIP tower '{cfg.towers.name}', {blocks}"
    elif plan["encoder_image"]:
        stages = cfg.image_encoder_trainable
        trains = "last stage trains" if stages is None else (f"{', '.join(stages)} train" if stages else "frozen")
        image = f"{cfg.image_encoder}, {trains}"
    else:
        image = "not used"
    if plan["clip_text"]:
        text = f"CLIP tower '{cfg.towers.name}', {blocks}"
    elif plan["encoder_text"]:
        text = f"{cfg.text_encoder}, {blocks}"
    else:
        text = "not used"
    return f"image: {image}; text: {text}; fusion {cfg.fusion}"


def tower_sides(plan: Dict[str, bool]) -> Tuple[str, ...]:
    """The CLIP towers ("image", "text") a model of this `branch_plan` runs: the ones whose blocks may train."""
    return tuple(side for side in ("image", "text") if plan[f"clip_{side}"])


def freeze_unused_tower(towers: Towers, plan: Dict[str, bool]) -> None:
    """A CLIP tower the model never runs (a single-tower model, or the other side from models.encoders) trains
    nothing: its blocks leave the optimizer."""
    if not plan["clip_image"]:
        towers.image_tower.requires_grad_(False)
    if not plan["clip_text"]:
        towers.text_tower.requires_grad_(False)
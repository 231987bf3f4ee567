"""Per-batch work of the fusion recipe: what the loader makes of a sample, turning a batch into model inputs
(through the frozen-feature caches), the evaluation pass, and the pass that fills a cache for a whole split.

Kept apart from the recipe so the loop reads as a loop. Nothing here knows about DeepSpeed; `model` is the
plain `FusionClassifier` (the engine's `.module`) and `forward` is whatever runs it (the engine in training).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ...core.distributed import all_gather_object, gather_tensors
from ...data.preprocess import ClassIndexLabel, ImageSamplePreprocess
from ...data.stain_augment import StainAugmentConfig
from ...models.encoders import IMAGENET_MEAN, IMAGENET_STD, image_normalisation
from .features import FeatureCache, merge_gathered
from .metrics import compute_metrics


def preprocess_for(classes: List[str], image_size: int, augment: bool, image_encoder: Optional[str] = None,
                   normalisation: Optional[Dict[str, Any]] = None,
                   stain: Optional[StainAugmentConfig] = None,
                   device: Optional[torch.device] = None) -> ImageSamplePreprocess:
    """What the loader makes of a sample for this recipe: the image at `image_size` normalised with the mean and
    std `image_encoder` was trained with (`models.image_normalisation`; ImageNet's when no encoder is named, or
    `normalisation` = {"mean", "std"} when given: an export's recorded values), the class index, the description
    and the slide id. `stain` (`data.loader.stain`): stain jitter of training images when `augment` is on.
    `device`: where batches are normalised (the training device; None: the CPU)."""
    norm = normalisation or (image_normalisation(image_encoder) if image_encoder
                             else {"mean": IMAGENET_MEAN, "std": IMAGENET_STD})
    return ImageSamplePreprocess(image_size, ClassIndexLabel(classes), augment=augment, mean=norm["mean"],
                                 std=norm["std"], text=True, stain=stain, device=device)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def prepare_inputs(model, batch: Dict[str, Any], caches: Dict[str, Optional[FeatureCache]],
                   device: torch.device) -> Dict[str, torch.Tensor]:
    """Model inputs for one batch. A branch whose encoder has a cache gets features (looked up, or computed
    without gradients and stored on a miss); a branch without one gets raw inputs for the model to encode."""
    keys: List[str] = batch["key"]
    dtype = model_dtype(model)
    inputs: Dict[str, torch.Tensor] = {}
    if model.image_encoder is not None:
        feats = _features(batch, "image", caches, keys,
                          lambda: model.encode_image(batch["image"].to(device, dtype)))
        if feats is not None:
            inputs["image_features"] = feats.to(device, dtype)
        else:
            inputs["pixel_values"] = batch["image"].to(device, dtype)
    if model.text_encoder is not None:
        def tokens() -> Dict[str, torch.Tensor]:
            return {k: v.to(device) for k, v in model.text_encoder.tokenize(batch["text"]).items()}

        feats = _features(batch, "text", caches, keys, lambda: model.encode_text(**tokens()))
        if feats is not None:
            inputs["text_features"] = feats.to(device, dtype)
        else:
            inputs.update(tokens())
    return inputs


def _features(batch: Dict[str, Any], branch: str, caches: Dict[str, Optional[FeatureCache]], keys: List[str],
              encode: Callable[[], torch.Tensor]) -> Optional[torch.Tensor]:
    """A branch's features: given in the batch (extracted features; also stored in the branch's cache, which a
    `FeatureTable` is built from), else from its cache (encoded without gradients and stored on a miss); None when
    the branch has no cache and must be encoded by the model itself."""
    feats = batch.get(f"{branch}_features")
    cache = caches.get(branch)
    if feats is not None and cache is not None and not all(k in cache for k in keys):
        cache.put(keys, feats)
    elif feats is None and cache is not None:
        feats = cache.lookup(keys)
        if feats is None:
            with torch.no_grad():
                feats = encode()
            cache.put(keys, feats)
    return feats


@dataclass
class Predictions:
    """A split's gathered predictions, in the same (rank-major) order on every rank."""

    probs: torch.Tensor    # [N, C] class probabilities
    targets: torch.Tensor  # [N] true class indices
    alpha: torch.Tensor    # [N] PRMF text weight per sample, or empty for other fusion modes


@torch.no_grad()
def evaluate(model, forward: Callable, loader, caches: Dict[str, Optional[FeatureCache]], env,
             classes: List[str], progress: Optional[Callable] = None) -> Tuple[Dict[str, Any], Predictions]:
    """Metrics over the whole split: each rank predicts its share (the eval loader yields every sample exactly
    once across ranks), predictions are gathered, every rank computes the same metrics. Returns (metrics,
    the gathered predictions)."""
    was_training = model.training
    model.eval()
    probs, targets, losses, alphas = [], [], [], []
    batches = progress(loader) if progress else loader
    for batch in batches:
        out = forward(**prepare_inputs(model, batch, caches, env.device))
        logits = out["logits"].float()
        label = batch["label"].to(logits.device)
        losses.append(F.cross_entropy(logits, label, reduction="sum").cpu())
        probs.append(torch.softmax(logits, -1).cpu())
        targets.append(label.cpu())
        if out["alpha"] is not None:
            alphas.append(out["alpha"].float().flatten().cpu())
    n = len(classes)
    local_p = torch.cat(probs) if probs else torch.zeros(0, n)
    local_t = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long)
    all_p, all_t = gather_tensors(env, (local_p.float(), local_t.long()))
    metrics = compute_metrics(all_p, all_t, classes, split=getattr(loader, "split", "eval"))
    loss_parts = all_gather_object(env, float(torch.stack(losses).sum()) if losses else 0.0)
    metrics["loss"] = sum(loss_parts) / max(1, int(all_t.numel()))
    alpha = torch.cat(alphas) if alphas else torch.zeros(0)
    alpha_parts = all_gather_object(env, alpha)
    alpha = torch.cat(alpha_parts)
    if alpha.numel():
        metrics["alpha_mean"] = float(alpha.mean())
    model.train(was_training)
    return metrics, Predictions(all_p, all_t, alpha)


@torch.no_grad()
def fill_caches(model, loader, caches: Dict[str, FeatureCache], env) -> Tuple[List[str], torch.Tensor]:
    """One pass over a split (eval mode: every sample once across ranks) computing the features of every
    cached encoder; the per-rank results are gathered so that every rank holds the whole split. Returns the
    split's keys and labels (in a rank-independent order) for a `FeatureTable`."""
    was_training = model.training
    model.eval()
    labels: Dict[str, int] = {}
    for batch in loader:
        prepare_inputs(model, batch, caches, env.device)  # fills the caches on misses
        labels.update(zip(batch["key"], batch["label"].tolist()))
    for kind, cache in caches.items():
        mine = {k: cache.items()[k] for k in labels}
        cache.update(merge_gathered(all_gather_object(env, mine)))
    all_labels: Dict[str, int] = {}
    for part in all_gather_object(env, labels):
        all_labels.update(part)
    model.train(was_training)
    keys = sorted(all_labels)
    return keys, torch.tensor([all_labels[k] for k in keys], dtype=torch.long)

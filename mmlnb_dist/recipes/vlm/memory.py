"""A first-order GPU memory estimate for LoRA fine-tuning of Qwen2.5-VL (stage 1), to pick settings that fit.

    est = estimate_memory(QwenVLDims(), lora_r=64, micro_batch=1, answer_tokens=256)
    est.total_gib, est.fits(24.0)

Terms (bytes per element in brackets):
- base weights: every parameter at `weight_bits` (16 for bf16; 4 for QLoRA NF4 + about 0.5 bit of quant state);
- LoRA: its weights (bf16), fp32 master copy, fp32 gradients and two fp32 Adam moments = 2 + 4 + 4 + 8 bytes;
- activations with gradient checkpointing: the bf16 input of each decoder layer kept for the backward pass,
  plus the peak of one layer recomputed (about 16 hidden-sized and 3 MLP-sized tensors per token), plus the
  logits (bf16 output, fp32 copy for the loss and its gradient: 2 + 4 + 4 bytes x vocab per token);
  the frozen vision tower runs without storing activations (no trainable parameter before the merger);
- a fixed allowance for the CUDA context, kernels and allocator fragmentation.

It is an estimate to be checked against measurements (SPEC anchors: about 16 GB for 16-bit LoRA by
LLaMA-Factory's table, 21.6-22 GiB measured by ms-swift with batch 1 and a frozen vision tower, 6-9 GB QLoRA).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Sequence, Tuple

GIB = 1024 ** 3
RTX4090_GIB = 24e9 / GIB
"""An RTX 4090's 24 GB (decimal) is 22.35 GiB; the estimate is in GiB."""
LM_TARGETS: Tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class QwenVLDims:
    """Defaults: Qwen2.5-VL-7B-Instruct's config.json."""

    vocab: int = 152064
    hidden: int = 3584
    intermediate: int = 18944
    layers: int = 28
    heads: int = 28
    kv_heads: int = 4
    vision_depth: int = 32
    vision_hidden: int = 1280
    vision_intermediate: int = 3420
    vision_out: int = 3584
    patch: int = 14
    merge: int = 2
    temporal_patch: int = 2

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def projection_shapes(self) -> Dict[str, Tuple[int, int]]:
        """(in, out) of each language-model projection."""
        kv = self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def count_params(d: QwenVLDims) -> Dict[str, int]:
    """Parameter counts of the language model, the vision tower (with merger) and the total."""
    shapes = d.projection_shapes()
    kv = d.kv_heads * d.head_dim
    per_layer = sum(a * b for a, b in shapes.values()) + d.hidden + 2 * kv + 2 * d.hidden  # qkv biases, norms
    lm = d.layers * per_layer + 2 * d.vocab * d.hidden + d.hidden  # embeddings + untied lm_head + final norm
    vh, vi = d.vision_hidden, d.vision_intermediate
    block = (vh * 3 * vh + 3 * vh) + (vh * vh + vh) + 2 * (vh * vi + vi) + (vi * vh + vh) + 2 * vh
    merged = vh * d.merge ** 2
    vision = (d.vision_depth * block + 3 * d.temporal_patch * d.patch ** 2 * vh
              + vh + merged * merged + merged + merged * d.vision_out + d.vision_out)
    return {"language_model": lm, "vision": vision, "total": lm + vision}


def lora_params(d: QwenVLDims, r: int, targets: Sequence[str] = LM_TARGETS) -> int:
    """LoRA parameters r x (in + out) on each targeted language-model projection of every layer."""
    shapes = d.projection_shapes()
    return d.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


def smart_resize(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = 28) -> Tuple[int, int]:
    """Qwen2-VL's resize rule: sides multiples of `factor`, area within [min_pixels, max_pixels]."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def image_tokens(d: QwenVLDims, height: int, width: int, min_pixels: int, max_pixels: int) -> int:
    """Tokens one image takes in the language model (patches of 14 px, then 2x2 merged)."""
    h, w = smart_resize(height, width, min_pixels, max_pixels, d.patch * d.merge)
    return (h // d.patch) * (w // d.patch) // d.merge ** 2


@dataclass
class MemoryEstimate:
    parts_gib: Dict[str, float] = field(default_factory=dict)
    seq_len: int = 0
    lora_params: int = 0

    @property
    def total_gib(self) -> float:
        return sum(self.parts_gib.values())

    def fits(self, budget_gib: float) -> bool:
        return self.total_gib <= budget_gib


def estimate_memory(d: QwenVLDims = QwenVLDims(), *, lora_r: int = 64, micro_batch: int = 4,
                    image_hw: Tuple[int, int] = (256, 256), min_pixels: int = 256 * 256,
                    max_pixels: int = 256 * 256, prompt_tokens: int = 45, answer_tokens: int = 256,
                    weight_bits: float = 16, gradient_checkpointing: bool = True,
                    offload_optimizer: bool = False, overhead_gib: float = 1.5) -> MemoryEstimate:
    """Peak GPU memory of one LoRA training step on a single GPU. `offload_optimizer` (ZeRO-2/3 with the
    optimizer on the CPU) leaves only the bf16 LoRA weights and gradients on the GPU."""
    seq = image_tokens(d, *image_hw, min_pixels, max_pixels) + prompt_tokens + answer_tokens
    n_lora = lora_params(d, lora_r)
    tokens = micro_batch * seq
    bf16 = 2
    if gradient_checkpointing:
        stored = d.layers * tokens * d.hidden * bf16
        recompute = tokens * (16 * d.hidden + 3 * d.intermediate) * bf16
    else:  # every layer keeps its intermediates
        stored = d.layers * tokens * (16 * d.hidden + 3 * d.intermediate) * bf16
        recompute = 0
    logits = tokens * d.vocab * (2 + 4 + 4)
    parts = {
        "base_weights": count_params(d)["total"] * (weight_bits + (0.5 if weight_bits < 16 else 0)) / 8 / GIB,
        "lora_weights_grads_adam": n_lora * ((2 + 2) if offload_optimizer else (2 + 4 + 4 + 8)) / GIB,
        "activations": (stored + recompute) / GIB,
        "logits": logits / GIB,
        "cuda_overhead": overhead_gib,
    }
    return MemoryEstimate(parts_gib=parts, seq_len=seq, lora_params=n_lora)


def rtx4090_plan() -> Dict[str, MemoryEstimate]:
    """The settings compared in docs/vlm.md for one 24 GB GPU (compare `total_gib` with RTX4090_GIB)."""
    return {
        "bf16 LoRA r=64, micro 4 (authors)": estimate_memory(micro_batch=4),
        "bf16 LoRA r=64, micro 2": estimate_memory(micro_batch=2),
        "bf16 LoRA r=64, micro 1": estimate_memory(micro_batch=1),
        "bf16 LoRA r=64, micro 1, ZeRO-2 optimizer offload": estimate_memory(micro_batch=1, offload_optimizer=True),
        "QLoRA 4-bit r=64, micro 4": estimate_memory(micro_batch=4, weight_bits=4),
    }

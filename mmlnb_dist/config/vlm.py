"""Stage 1: the description VLM (Qwen2.5-VL + LoRA) and description generation."""
from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

from pydantic import Field

from .base import Section

DEFAULT_PROMPT = (
    "You are a specialized pathologist, please describe what you see microscopically on the "
    "neuroblastoma pathology image."
)


class LoraConfig(Section):
    r: int = Field(64, ge=1)
    """LoRA rank."""

    alpha: int = Field(16, ge=1)
    """LoRA alpha (scaling alpha / r)."""

    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """LoRA dropout."""

    target_modules: List[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    """Projection names adapted in the language model."""

    vision_lora: bool = False
    """Also adapt the vision tower's blocks (off: suffix matching must never reach it silently)."""

    train_merger: bool = False
    """Fully train the vision-language merger (projector)."""


class GenerationConfig(Section):
    preset: Literal["greedy", "authors"] = "greedy"
    """greedy decoding, or the authors' sampling (temperature 0.3, top_p 0.9, top_k 50, repetition 1.2)."""

    max_new_tokens: int = Field(256, ge=1)
    """Tokens generated per description."""

    batch_size: int = Field(8, ge=1)
    """Images per generate() call on each rank."""


class VLMConfig(Section):
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    """Base model name or local path, or `tiny` for a randomly initialised test-size Qwen2.5-VL."""

    pairs: Path = Path("shards/demo")
    """Shard set with image-description pairs to fine-tune on."""

    prompt: str = DEFAULT_PROMPT
    """The user prompt, identical at training and generation."""

    min_pixels: int = Field(256 * 256, ge=28 * 28)
    """Lower bound on image pixels after the processor's resize."""

    max_pixels: int = Field(256 * 256, ge=28 * 28)
    """Upper bound on image pixels after the processor's resize (authors: 256x256)."""

    lora: LoraConfig = LoraConfig()
    """LoRA adapter."""

    epochs: int = Field(5, ge=1)
    """Fine-tuning epochs."""

    max_steps: Optional[int] = Field(None, ge=1)
    """Stop after this many optimizer steps (overrides epochs)."""

    global_batch_size: int = Field(16, ge=1)
    """Pairs per optimizer step across all ranks (authors: 4 per device x 4 accumulation)."""

    lr: float = Field(1e-4, gt=0.0)
    """Learning rate."""

    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass to save memory."""

    max_length: int = Field(1024, ge=16)
    """Token limit of one training sequence (prompt, image tokens and answer)."""

    generation: GenerationConfig = GenerationConfig()
    """Description generation."""

"""The VLM recipe's config section (`vlm:`): the description model (Qwen2.5-VL + LoRA), its fine-tuning and
description generation."""
from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ...core.config import PathText, Section
from ...core.errors import ConfigError
from ...core.sections import LRScheduleConfig

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
    """Projection names adapted in the language model (matched by suffix), or `[all-linear]`: every linear layer of
    the language model but its output head (peft's shorthand)."""

    vision_lora: bool = False
    """Also adapt the vision tower's blocks (off: suffix matching must never reach it silently)."""

    train_merger: bool = False
    """Fully train the vision-language merger (projector)."""

    modules_to_save: List[str] = []
    """Further modules trained in full and saved with the adapter (e.g. [lm_head, embed_tokens] for the
    randomly initialised `tiny` model, whose near-zero output layer LoRA alone cannot scale)."""


class GenerationConfig(Section):
    preset: Literal["greedy", "authors"] = "greedy"
    """greedy decoding, or the authors' sampling (temperature 0.3, top_p 0.9, top_k 50, repetition 1.2), drawn per
    image from noise seeded by its pixels: an image gets the same text in any batch, on any number of ranks."""

    temperature: Optional[float] = Field(None, gt=0.0)
    """Sampling temperature; None: the preset's (authors: 0.3). Sampling presets only."""

    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    """Nucleus sampling: keep the most likely tokens up to this probability mass; None: the preset's (authors:
    0.9). Sampling presets only."""

    top_k: Optional[int] = Field(None, ge=0)
    """Keep the k most likely tokens (0: no limit); None: the preset's (authors: 50). Sampling presets only."""

    repetition_penalty: Optional[float] = Field(None, gt=0.0)
    """HF's repetition penalty (1: none); None: the preset's: authors 1.2, greedy 1 whatever the model's own
    generation config says (Qwen2.5-VL's says 1.05, which HF would otherwise apply to greedy decoding too)."""

    max_new_tokens: int = Field(256, ge=1)
    """Tokens generated per description."""

    batch_size: int = Field(8, ge=1)
    """Images per generate() call on each rank."""

    merge_adapter: bool = True
    """Fold the LoRA weights into the base model before generating (same outputs, faster decoding)."""

    @field_validator("temperature", mode="before")
    @classmethod
    def _temperature_zero_is_greedy(cls, value):
        if value is not None and not isinstance(value, bool) and value == 0:  # (vLLM's and LLaMA-Factory's greedy)
            raise ValueError("temperature 0 asks for greedy decoding, which is a preset here: set "
                             "vlm.generation.preset=greedy vlm.generation.temperature=null")
        return value

    @model_validator(mode="after")
    def _sampling_settings_need_sampling(self) -> "GenerationConfig":
        given = [k for k in ("temperature", "top_p", "top_k") if getattr(self, k) is not None]
        if self.preset == "greedy" and given:
            raise ValueError(f"{', '.join(given)} shape sampling, and preset 'greedy' does not sample: set "
                             f"preset: authors (then these replace the authors' values) or drop them (as overrides: "
                             f"{' '.join(f'vlm.generation.{k}=null' for k in given)})")
        return self


class VLMConfig(Section):
    model: PathText = "Qwen/Qwen2.5-VL-7B-Instruct"
    """Base model name or local path, or `tiny` for a randomly initialised test-size Qwen2.5-VL."""

    pairs: Path = Path("shards/demo")
    """Shard set with image-description pairs to fine-tune on."""

    finetune: bool = True
    """`pipeline`: fine-tune the VLM with LoRA before it describes the patches. False: the base VLM (no adapter)
    describes them, the paper's "no VLM fine-tuning" row; for patches or slides without any reference descriptions
    (no `vlm.pairs` needed)."""

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

    micro_batch_per_gpu: Optional[int] = Field(None, ge=1)
    """Pairs per GPU per forward pass (authors: 4); default distributed.micro_batch_per_gpu, else no accumulation."""

    lr: float = Field(1e-4, gt=0.0)
    """Peak learning rate (AdamW)."""

    merger_lr: Optional[float] = Field(None, gt=0.0)
    """Peak learning rate of the vision-language merger when `lora.train_merger` (ms-swift's `aligner_lr`);
    None: `lr`. A randomly initialised merger learns to carry the image faster at a higher rate."""

    vision_lr: Optional[float] = Field(None, gt=0.0)
    """Peak learning rate of the vision tower's adapters when `lora.vision_lora` (ms-swift's `vit_lr`); None:
    `lr`."""

    lr_schedule: LRScheduleConfig = LRScheduleConfig(name="cosine", warmup_ratio=0.1)
    """Learning-rate schedule over the fine-tuning steps: linear warmup over 10% of them, then cosine to 0."""

    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass to save memory."""

    max_length: int = Field(1024, ge=16)
    """Token limit of one training sequence (prompt, image tokens and answer)."""

    log_every: int = Field(10, ge=1)
    """Log the training loss every this many optimizer steps."""

    eval_every: Optional[int] = Field(None, ge=1)
    """Validation loss every this many steps (always at the end); None: only at the end. Needs val pairs in
    `vlm.pairs` (refused without them)."""

    keep_best: bool = False
    """With `eval_every`: `<run>/adapter` (the run's `adapter_dir`) is the adapter of the validation with the lowest
    val/loss (the HF Trainer's load_best_model_at_end, metric eval_loss), the last step's goes to `adapter-last`;
    `best.json` and result.json name the step. False: `adapter` is the last step's."""

    checkpoint_every: Optional[int] = Field(50, ge=1)
    """DeepSpeed checkpoint (resumable, `run.resume=true`) every this many steps, and always at the end; None:
    only at the end (a killed run then starts again from step 0)."""

    val_max_samples: Optional[int] = Field(None, ge=1)
    """Cap on validation pairs for the eval loss (None: the whole val split)."""

    tiny_seed: int = Field(0, ge=0)
    """Seed of the randomly initialised `tiny` model (the same seed gives the same base weights everywhere)."""

    tiny_vision: Literal["random", "distilled"] = "random"
    """The `tiny` model's vision tower: random, or `distilled`: pretrained label-free to predict EfficientNet-Lite0's
    ImageNet features on synthetic patches of its own (about 16 s once per cache on 2 cores; `tiny_vision.py`), a
    stand-in for a real checkpoint's pretrained tower. Ignored for any other model."""

    cache_dir: Optional[Path] = None
    """Where the `tiny` model and tokenizer are built once (default: $MMLNB_CACHE or <tmp>/mmlnb-cache)."""

    generation: GenerationConfig = GenerationConfig()
    """Description generation."""

    @model_validator(mode="after")
    def _pixel_bounds_in_order(self) -> "VLMConfig":
        # Inverted bounds invert the resize: small images get the most image tokens, large ones the fewest.
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"vlm.min_pixels={self.min_pixels} is above vlm.max_pixels={self.max_pixels}: the lower "
                             f"bound must not exceed the upper one (equal values fix one image size)")
        return self



PART_RATES = (("merger_lr", "train_merger"), ("vision_lr", "vision_lora"))
"""(`vlm` rate, `vlm.lora` switch that trains the part it applies to)."""


def check_part_rates_config(vcfg: "VLMConfig") -> None:
    """Refuse (ConfigError) a part's rate (`vlm.merger_lr`, `vlm.vision_lr`) with nothing of its part trained, where
    the config alone decides it (`vlm.lora.modules_to_save` empty; else `lora_names.check_part_rates` decides on the
    model's structure). `model.param_groups` gives a part's rate to its trainable parameters only: with the part
    frozen the rate trained nothing, without a word. Fine-tuning's config check, not a validator: a run's recorded
    config that holds such a rate still loads (`predict`, `describe --config` of a model trained before)."""
    if not vcfg.lora.modules_to_save:
        for rate, flag in PART_RATES:
            if getattr(vcfg, rate) is not None and not getattr(vcfg.lora, flag):
                raise ConfigError(part_rate_error(rate, flag, getattr(vcfg, rate)))


def part_rate_error(rate: str, flag: str, value: float) -> str:
    """The message refusing `vlm.<rate>` while nothing of its part is trained."""
    part = "the vision-language merger" if rate == "merger_lr" else "the vision tower"
    return (f"vlm.{rate}={value} is the learning rate of {part}, but vlm.lora.{flag} is off and "
            f"vlm.lora.modules_to_save holds no module of it: nothing of it is trained, so the rate would apply to "
            f"nothing; set vlm.lora.{flag}=true, or drop the rate (vlm.{rate}=null)")


def vlm_run_name(run_name: str) -> str:
    """The name of the VLM fine-tuning run beside the fusion run `run_name` (the pipeline's, and
    `launch/finetune_vlm.sh`'s without a run.name=...): the fusion stage writes `run_name` itself and refuses a
    folder that holds another run's checkpoints."""
    return f"{run_name}-vlm"

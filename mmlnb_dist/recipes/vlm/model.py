"""Stage 1 model: Qwen2.5-VL loading, LoRA (applied here and nowhere else), and the one chat template.

Three things must agree between fine-tuning and description generation, so they live together here:

1. the prompt: `prompt_text()` renders the processor's chat template with one image placeholder and the user
   prompt, ending in the assistant header (`add_generation_prompt=True`);
2. the tokens: `encode_prompt()` turns (image, prompt) into ids with the image placeholder expanded to the
   image's token count; `encode_pair()` appends the answer and `<|im_end|>` to *those same ids*, so the ids a
   model is trained on are exactly the ids it later generates from (the authors trained without the prompt
   and generated with it, and ended sequences with the pad token: both avoided by construction);
3. the image resolution: the processor's min/max pixel bounds, set once in `load_vlm()`.

Labels are -100 on every prompt and image token; only the answer and its end-of-turn token are supervised.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ...core.divergence import load_finite
from ...core.errors import UserError
from ...core.progress import route_library_bars
from ...data.images import decode_image, to_rgb
from .config import GenerationConfig, LoraConfig
from .lora_names import adapts_language, check_lora_names, rate_part

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"
TINY = "tiny"

# The authors' sampling (SPEC 2): kept as a preset; greedy is the default because it is reproducible.
AUTHORS_SAMPLING = dict(do_sample=True, temperature=0.3, top_p=0.9, top_k=50, repetition_penalty=1.2)

# Names inside Qwen2.5-VL's vision tower (`model.visual`): its blocks use a fused `qkv` and `proj`, and
# `gate/up/down_proj` in the MLP, which plain suffix matching on the language model's names would also hit.
VISION_TARGETS = ("attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
VISION_PREFIX = "visual."


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------

BUILD_SECONDS: Dict[str, float] = {}
"""Seconds this process spent in `resolve_model_path` per tiny model folder (its build, on first use): finetune-vlm
reports them, whichever of its checks built the model."""


def resolve_model_path(name: str, seed: int = 0, cache_dir: Optional[Path] = None,
                       tiny_vision: str = "random") -> str:
    """`tiny` -> the cached tiny model folder of (seed, tiny_vision) (built on first use); anything else is passed
    through."""
    if name == TINY:
        from .tiny_qwen import ensure_tiny_model

        started = time.perf_counter()
        path = str(ensure_tiny_model(seed=seed, cache_dir=cache_dir, vision=tiny_vision))
        BUILD_SECONDS[path] = BUILD_SECONDS.get(path, 0.0) + time.perf_counter() - started
        return path
    return str(name)


def load_processor(path: str, min_pixels: int, max_pixels: int):
    """The model's processor with the image bounded to [min_pixels, max_pixels] (aspect ratio kept)."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(path)
    except OSError as err:  # not cached and no network, or no such repository
        from .source import not_loadable

        raise not_loadable(path, err) from None
    # transformers 5 bounds the resize through `size` (the min/max_pixels keywords are deprecated).
    processor.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    return processor


def load_vlm(name: str, *, min_pixels: int, max_pixels: int, dtype: torch.dtype = torch.float32,
             seed: int = 0, cache_dir: Optional[Path] = None, tiny_vision: str = "random"):
    """(model, processor) for a hub id, a local folder, or `tiny` (`seed`, `cache_dir`, `tiny_vision`: which tiny
    model, `vlm.tiny_*`). The model is on the CPU, eval mode."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    path = resolve_model_path(name, seed=seed, cache_dir=cache_dir, tiny_vision=tiny_vision)
    processor = load_processor(path, min_pixels, max_pixels)
    route_library_bars()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=dtype)
    tok = processor.tokenizer
    if tok.pad_token_id is None:  # Qwen ships `<|endoftext|>` as pad; keep a fallback for odd checkpoints
        tok.pad_token = "<|endoftext|>"
    model.generation_config.pad_token_id = tok.pad_token_id
    model.eval()
    return model, processor


def dtype_for(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


# ---------------------------------------------------------------------------------------------------------
# LoRA: the only place that decides what is adapted
# ---------------------------------------------------------------------------------------------------------

def _linear_names(model: torch.nn.Module) -> List[str]:
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def lora_target_modules(model: torch.nn.Module, lora: LoraConfig) -> List[str]:
    """Full module names to adapt: the language model's `lora.target_modules`, plus the vision blocks'
    projections only when `lora.vision_lora` is set.

    peft matches a plain name list by suffix, so `gate_proj` would silently adapt the vision tower's MLPs too;
    full names make the choice explicit and visible in `adapter_config.json`.
    """
    check_lora_names(model, lora)  # (peft would ignore a name matching nothing)
    names = []
    for name in _linear_names(model):
        in_vision = VISION_PREFIX in name
        if in_vision:
            if lora.vision_lora and ".blocks." in name and any(name.endswith("." + t) for t in VISION_TARGETS):
                names.append(name)
        elif adapts_language(name, lora.target_modules):
            names.append(name)
    return names


def merger_module_name(model: torch.nn.Module) -> str:
    for name, _ in model.named_modules():
        if name.endswith("visual.merger"):
            return name
    raise ValueError("the model has no vision merger (`visual.merger`)")


def apply_lora(model: torch.nn.Module, lora: LoraConfig):
    """Wrap `model` in a peft LoRA model as configured; the merger is fully trained via modules_to_save."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_cfg = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
        target_modules=lora_target_modules(model, lora),
        modules_to_save=([merger_module_name(model)] if lora.train_merger else []) + list(lora.modules_to_save)
        or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)


def param_groups(model: torch.nn.Module, lr: float, merger_lr: Optional[float] = None,
                 vision_lr: Optional[float] = None) -> List[Dict[str, Any]]:
    """The optimizer's parameter groups. With a `merger_lr` the merger's trainable parameters get their own group
    ("merger"), with a `vision_lr` the vision tower's (its LoRA adapters, "vision"); the rest ("adapter") trains at
    `lr`. Without either: one group at the optimizer's `lr`."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    rates = {"adapter": lr, "merger": merger_lr, "vision": vision_lr}

    def part(name: str) -> str:
        found = rate_part(name)
        return found if rates[found] is not None else "adapter"

    by_part: Dict[str, List[torch.nn.Parameter]] = {}
    for name, param in trainable:
        by_part.setdefault(part(name), []).append(param)
    if set(by_part) <= {"adapter"}:
        return [{"params": [p for _, p in trainable]}]
    return [{"params": by_part[name], "name": name, "lr": rates[name]} for name in rates if name in by_part]


def load_adapter(model: torch.nn.Module, adapter_dir: Union[str, Path], trainable: bool = False):
    """Base model + a saved peft adapter (safetensors), refused by name on another base (`check_adapter_loads`)."""
    from peft import PeftModel
    from .preflight import check_adapter_loads  # (here, not at the top: preflight imports this module)

    check_adapter_loads(model, adapter_dir)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)


def check_adapter_finite(adapter_dir: Union[str, Path]) -> None:
    """Refuse an adapter holding NaN or inf weights: generation from it runs on NaN logits."""
    for path in sorted(Path(adapter_dir).glob("*.safetensors")):
        load_finite(path, "fine-tune the adapter again (with a lower vlm.lr if its fine-tuning diverged)")


def check_adapter_base(model: Union[torch.nn.Module, str], adapter_dir: Union[str, Path]) -> None:
    """The base `adapter_dir` was trained on (its adapter_config.json) against the one loaded, by folder name (a
    cache or checkpoint folder may move). Tiny bases with the same seed differ in their tower (`vlm.tiny_vision`)
    and builder, and an adapter fits one of them only: refused, naming both. Other names may well be the same
    weights (a hub id and a local copy of it): a warning."""
    from .tiny_qwen import FOLDER_PREFIX

    config = Path(adapter_dir) / "adapter_config.json"
    trained_on = json.loads(config.read_text()).get("base_model_name_or_path") if config.is_file() else None
    loaded = model if isinstance(model, str) else getattr(model, "name_or_path", None)  # or the resolved path
    if not trained_on or not loaded:
        return
    trained_name, loaded_name = Path(str(trained_on)).name, Path(str(loaded)).name
    if trained_name == loaded_name:
        return
    if trained_name.startswith(FOLDER_PREFIX) or loaded_name.startswith(FOLDER_PREFIX):
        raise UserError(f"the adapter {adapter_dir} was trained on the base model {trained_name}, and the base loaded "
                        f"is {loaded_name}: set vlm.model, vlm.tiny_seed and vlm.tiny_vision as in the fine-tuning "
                        f"run (its config.yaml beside the adapter)")
    log.warning("the adapter %s was trained on %s and is loaded onto %s: the same weights under another name?",
                adapter_dir, trained_on, loaded)


def adapter_sha256(adapter_dir: Optional[Union[str, Path]]) -> Optional[str]:
    """SHA-256 over every file of an adapter folder (names and bytes: weights and adapter_config.json): the one
    fingerprint of an adapter, recorded in describe's manifest and compared by `predict` with the training text's."""
    if not adapter_dir:
        return None
    h = hashlib.sha256()
    root = Path(adapter_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def count_trainable(model: torch.nn.Module) -> Tuple[int, int]:
    """(trainable, total) parameter counts; ZeRO-3 partitions report their full size via `ds_numel`."""
    trainable = total = 0
    for p in model.parameters():
        n = getattr(p, "ds_numel", p.numel())
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


# ---------------------------------------------------------------------------------------------------------
# The template, shared by training and generation
# ---------------------------------------------------------------------------------------------------------

def prompt_messages(prompt: str) -> List[Dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def prompt_text(processor, prompt: str) -> str:
    """The rendered chat prompt up to and including the assistant header."""
    return processor.apply_chat_template(prompt_messages(prompt), tokenize=False, add_generation_prompt=True)


def as_rgb(image: Union[bytes, "Any"]):
    """PIL RGB image from encoded bytes (a shard member) or a PIL image."""
    return decode_image(bytes(image)) if isinstance(image, (bytes, bytearray)) else to_rgb(image)


@dataclass
class Encoded:
    """One sequence: token ids (+ labels when training) and its image tensors."""

    input_ids: List[int]
    mm_token_type_ids: List[int]
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    labels: Optional[List[int]] = None


def encode_prompt(processor, image, prompt: str) -> Encoded:
    """(image, prompt) -> prompt ids with the image placeholder expanded to this image's token count."""
    out = processor(text=[prompt_text(processor, prompt)], images=[as_rgb(image)], return_tensors="pt")
    ids = out["input_ids"][0].tolist()
    mm = out.get("mm_token_type_ids")
    mm_ids = mm[0].tolist() if mm is not None else [0] * len(ids)
    return Encoded(ids, mm_ids, out["pixel_values"], out["image_grid_thw"])


def encode_pair(processor, image, prompt: str, answer: str, max_length: int) -> Encoded:
    """Prompt ids + answer ids + `<|im_end|>`; labels -100 on the prompt. Long answers are cut at max_length, their
    `<|im_end|>` kept as the last token."""
    enc = encode_prompt(processor, image, prompt)
    n_prompt = len(enc.input_ids)
    if n_prompt >= max_length:
        raise ValueError(
            f"the prompt and image take {n_prompt} tokens, more than vlm.max_length={max_length}: "
            f"raise vlm.max_length, or lower vlm.max_pixels / vlm.min_pixels"
        )
    answer_ids = processor.tokenizer(answer.strip() + END_OF_TURN, add_special_tokens=False)["input_ids"]
    if len(answer_ids) > max_length - n_prompt:  # cut, keeping <|im_end|>: a cut answer must still teach to stop
        answer_ids = answer_ids[: max_length - n_prompt - 1] + answer_ids[-1:]
    enc.input_ids = enc.input_ids + answer_ids
    enc.mm_token_type_ids = enc.mm_token_type_ids + [0] * len(answer_ids)
    enc.labels = [IGNORE_INDEX] * n_prompt + list(answer_ids)
    return enc


def collate(batch: Sequence[Encoded], pad_id: int, padding_side: str = "right") -> Dict[str, torch.Tensor]:
    """Pad a batch: right for training (labels padded with -100), left for generation (new tokens follow
    the last real token of every row)."""
    width = max(len(e.input_ids) for e in batch)
    ids, mask, mm, labels = [], [], [], []
    for e in batch:
        pad = width - len(e.input_ids)
        row_mask = [1] * len(e.input_ids)
        if padding_side == "left":
            ids.append([pad_id] * pad + e.input_ids)
            mask.append([0] * pad + row_mask)
            mm.append([0] * pad + e.mm_token_type_ids)
            if e.labels is not None:
                labels.append([IGNORE_INDEX] * pad + e.labels)
        else:
            ids.append(e.input_ids + [pad_id] * pad)
            mask.append(row_mask + [0] * pad)
            mm.append(e.mm_token_type_ids + [0] * pad)
            if e.labels is not None:
                labels.append(e.labels + [IGNORE_INDEX] * pad)
    out = {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "mm_token_type_ids": torch.tensor(mm, dtype=torch.int),
        "pixel_values": torch.cat([e.pixel_values for e in batch], dim=0),
        "image_grid_thw": torch.cat([e.image_grid_thw for e in batch], dim=0),
    }
    if labels:
        out["labels"] = torch.tensor(labels, dtype=torch.long)
    return out


# ---------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------

def generation_kwargs(gen: GenerationConfig, processor) -> Dict[str, Any]:
    tok = processor.tokenizer
    kw: Dict[str, Any] = dict(
        max_new_tokens=gen.max_new_tokens,
        eos_token_id=tok.convert_tokens_to_ids(END_OF_TURN),
        pad_token_id=tok.pad_token_id,
    )
    kw.update(decoding_settings(gen))
    return kw


def decoding_settings(gen: GenerationConfig) -> Dict[str, Any]:
    """How tokens are chosen, in HF's `generate` terms, everything explicit (a model's own generation config, e.g.
    Qwen2.5-VL's repetition_penalty 1.05, never adds to it): the preset's values with the config's overrides."""
    if gen.preset == "authors":
        out = dict(AUTHORS_SAMPLING)
        out.update({k: getattr(gen, k) for k in ("temperature", "top_p", "top_k") if getattr(gen, k) is not None})
    else:
        out = dict(do_sample=False, temperature=None, top_p=None, top_k=None, repetition_penalty=1.0)
    if gen.repetition_penalty is not None:
        out["repetition_penalty"] = gen.repetition_penalty
    return out


def describe_generate_kwargs(gen: GenerationConfig, processor, batch: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    """`generate` kwargs of `describe` for `batch` (read before its pixels are cast to the model's dtype): greedy, or
    a sampling preset drawn per image from noise seeded by the image's pixels (`sampling.seeded_sampling`)."""
    kwargs = generation_kwargs(gen, processor)
    sampled = bool(kwargs.get("do_sample"))
    # HF's own repetition penalty would count a row's left padding as generated text: ours skips it (greedy too)
    if sampled or kwargs.get("repetition_penalty") not in (None, 1.0):
        from .sampling import image_seeds, seeded_sampling  # transformers' processors: imported when needed

        seeds = image_seeds(batch["pixel_values"], batch["image_grid_thw"]) if sampled else None
        kwargs = seeded_sampling(kwargs, seeds, batch["attention_mask"])
    return kwargs


def generation_batch(processor, images: Sequence[Any], prompt: str) -> Dict[str, torch.Tensor]:
    """The prompts of `images`, left-padded: images of different sizes give prompts of different lengths (one
    token per merged 28x28 patch), and left padding keeps each prompt flush against its first new token."""
    encoded = [encode_prompt(processor, img, prompt) for img in images]
    return collate(encoded, processor.tokenizer.pad_token_id, padding_side="left")


@torch.no_grad()
def generate_descriptions(model, processor, images: Sequence[Any], prompt: str, gen: GenerationConfig,
                          device: torch.device = torch.device("cpu"),
                          model_dtype: Optional[torch.dtype] = None) -> List[str]:
    """One description per image, in one left-padded batched `generate` call; each stops at `<|im_end|>`
    (excluded from the text).

    Sampling presets draw every image's tokens from noise seeded by that image's own pixels and the token
    position (`sampling.seeded_sampling`): the same image gets the same description in any batch (in `describe` on
    any number of ranks, with any batch size, resumed, in `predict --vlm` and a rerun alike), and the caller's
    random state is neither read nor moved."""
    batch = {k: v.to(device) for k, v in generation_batch(processor, images, prompt).items()}
    kwargs = describe_generate_kwargs(gen, processor, batch)
    if model_dtype is not None:
        batch["pixel_values"] = batch["pixel_values"].to(model_dtype)
    out = model.generate(**batch, **kwargs)
    new_tokens = out[:, batch["input_ids"].shape[1]:]
    texts = processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [t.strip() for t in texts]

"""What `finetune-vlm` and `describe` check before they claim a folder: that the prompt is text the chat template
can place beside one image, that the prompt and each image size fit `vlm.max_length`, and (describe) that the
adapter fits the base and holds finite weights.

These errors used to surface in the first batch, after the run folder or the describe output had been claimed
with the bad settings, so the corrected rerun was refused until `--restart` (describe) or met a folder it had
not made (fine-tuning). `drop_claim_without_output` is the net under the rest: a describe claim with nothing
written behind it goes when the run fails.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple, Union

from ...core.errors import ConfigError, UserError
from ...data.map import PROGRESS_DIR, PROVENANCE_FILE
from . import model as V
from .lora_names import check_lora_names, check_part_rates, model_skeleton, tiny_skeleton
from .merge import merged_from
from .pair_lengths import prompt_tokens_by_size
from .trained_with import check_describe_settings

if TYPE_CHECKING:
    from .config import VLMConfig

log = logging.getLogger(__name__)

QWEN_VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>")
"""Qwen2.5-VL's image markup: the chat template writes it for the one image; in the prompt it would be a second,
imageless image or video slot (the processor refuses `<|image_pad|>` and `<|video_pad|>`; the others pass and
confuse the model)."""

LITERAL_IMAGE_TAG = "<image>"
"""LLaMA-Factory's / LLaVA's image placeholder: plain text to Qwen's template, which places the image itself."""


def check_prompt_text(prompt: str) -> None:
    """Refuse Qwen's vision tokens in `vlm.prompt`; warn on a literal `<image>` (it stays text)."""
    found = [t for t in QWEN_VISION_TOKENS if t in prompt]
    if found:
        raise ConfigError(f"vlm.prompt holds {', '.join(found)}: the chat template already places the image before "
                          f"the prompt; write the prompt as plain text, without Qwen's vision tokens")
    if LITERAL_IMAGE_TAG in prompt:
        log.warning("vlm.prompt holds %r: Qwen's chat template places the image itself, so it is kept as plain "
                    "text (LLaMA-Factory's placeholder); drop it unless the model should read it", LITERAL_IMAGE_TAG)


def largest_prompt_tokens(processor, prompt: str, max_pixels: int) -> int:
    """Tokens of the chat prompt with a square image of `max_pixels` (the most image tokens the bounds allow);
    a processor error on the prompt is a ConfigError naming `vlm.prompt`."""
    from PIL import Image

    side = max(28, math.isqrt(max_pixels))
    try:
        return len(V.encode_prompt(processor, Image.new("RGB", (side, side), "white"), prompt).input_ids)
    except ValueError as err:
        raise ConfigError(f"vlm.prompt {prompt!r} cannot be encoded with an image: {err}") from None


def check_prompt_fits(processor, vcfg: "VLMConfig") -> None:
    """Refuse a `vlm.max_length` that leaves no room for an answer after the prompt and the largest image."""
    n_prompt = largest_prompt_tokens(processor, vcfg.prompt, vcfg.max_pixels)
    if n_prompt >= vcfg.max_length:
        raise ConfigError(f"vlm.max_length={vcfg.max_length}: the prompt and an image at vlm.max_pixels="
                          f"{vcfg.max_pixels} take {n_prompt} tokens, leaving no room for the description; raise "
                          f"vlm.max_length (above {n_prompt}) or lower vlm.max_pixels")


def check_finetune_model(vcfg: "VLMConfig", sizes: Sequence[Tuple[str, Tuple[int, int]]] = ()) -> None:
    """`finetune-vlm`'s checks that need the model's structure and processor (no weights are loaded): LoRA names,
    rates of parts that are trained, the prompt, and room for an answer in `vlm.max_length`, beside the largest
    square image and beside each image size of `sizes` ((key, size) of the pairs to train and validate on: a
    narrow image can take more tokens). Builds the `tiny` model when missing (setup would)."""
    check_prompt_text(vcfg.prompt)
    if vcfg.model == V.TINY:  # from its config: a misspelt name is refused before `tiny` is built (seconds to minutes)
        skeleton = tiny_skeleton()
        check_lora_names(skeleton, vcfg.lora)
    resolved = V.resolve_model_path(vcfg.model, vcfg.tiny_seed, vcfg.cache_dir, vcfg.tiny_vision)
    if vcfg.model != V.TINY:
        skeleton = model_skeleton(resolved)
        check_lora_names(skeleton, vcfg.lora)
    check_part_rates(skeleton, vcfg)
    processor = V.load_processor(resolved, vcfg.min_pixels, vcfg.max_pixels)
    check_prompt_fits(processor, vcfg)
    prompt_tokens_by_size(processor, vcfg.prompt, vcfg.max_length, sizes)


def check_not_merged_twice(vlm: str, adapter: Optional[str]) -> None:
    """Refuse an adapter on a merged export (`export-vlm`): the export holds its adapter already, and a second one
    on top applies LoRA twice (only a warning when the base names differ)."""
    held = merged_from(vlm).get("adapter") if adapter else None
    if held:
        raise UserError(f"--vlm {vlm} is an export-vlm model that already holds the adapter {held}; --adapter "
                        f"{adapter} on top would apply LoRA a second time: drop --adapter, or give the base model "
                        f"as --vlm")


def check_describe_ready(vcfg: "VLMConfig", vlm: str, adapter: Optional[str]) -> None:
    """Everything describe would otherwise meet in its first batch: the fine-tuning run's settings, the prompt,
    the adapter's base and its weights. Builds the `tiny` model when missing (provenance resolves it anyway)."""
    check_not_merged_twice(vlm, adapter)
    check_describe_settings(vcfg, vlm, adapter)
    check_prompt_text(vcfg.prompt)
    resolved = V.resolve_model_path(vlm, vcfg.tiny_seed, vcfg.cache_dir, vcfg.tiny_vision)
    if adapter:
        V.check_adapter_base(resolved, adapter)
        V.check_adapter_finite(adapter)
        check_adapter_shapes(resolved, adapter)
    largest_prompt_tokens(V.load_processor(resolved, vcfg.min_pixels, vcfg.max_pixels), vcfg.prompt,
                          vcfg.max_pixels)


PEFT_PREFIX = "base_model.model."


def check_adapter_shapes(resolved: str, adapter: str) -> None:
    """Refuse an adapter whose tensors do not fit the base model's layers (trained on another model size: a 3B's
    adapter on a 7B). Base names that differ are only warned about (`check_adapter_base`), so peft's `size
    mismatch` traceback came in the first batch, after the output was claimed. Shapes only: the base's structure
    on the meta device, the adapter's safetensors headers."""
    check_adapter_fits(model_skeleton(resolved), resolved, adapter)


def check_adapter_loads(model: Any, adapter: Union[str, Path]) -> None:
    """What `load_adapter` checks on the loaded base before peft loads the adapter: its base by name, finite weights,
    and shapes that fit (for `predict --vlm` and `export-vlm` too, which have no describe preflight: peft's raw
    `size mismatch` traceback named neither the adapter nor the base to give)."""
    V.check_adapter_base(model, adapter)
    V.check_adapter_finite(adapter)
    check_adapter_fits(model, getattr(model, "name_or_path", None) or "the loaded model", adapter)


def check_adapter_fits(base: Any, name: str, adapter: Union[str, Path]) -> None:
    """`check_adapter_shapes` against `base` (a skeleton, or the loaded model `load_adapter` is given: `predict
    --vlm` and `export-vlm` load it without describe's preflight), naming it `name`."""
    from safetensors import safe_open

    modules, params = dict(base.named_modules()), dict(base.named_parameters())
    for path in sorted(Path(adapter).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                shape = list(f.get_slice(key).get_shape())
                expected = _expected_shape(key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key,
                                           shape, modules, params)
                if expected != shape:
                    raise UserError(f"--adapter {adapter} does not fit the base model {name}: its {key} has "
                                    f"shape {shape}, the base's layer needs "
                                    f"{expected if expected is not None else 'no such module'} (the adapter was "
                                    f"trained on another model: give its base as --vlm / vlm.model, named in "
                                    f"{Path(adapter) / 'adapter_config.json'} base_model_name_or_path)")


def _expected_shape(name: str, shape: list, modules: dict, params: dict) -> Optional[list]:
    """The shape `name` (an adapter tensor, peft's prefix dropped) must have on the base: LoRA A's weight is (r, in)
    and B's (out, r) of the linear layer it adapts (None, refused, when the base has no such linear layer); a fully
    trained module's tensor (`modules_to_save`) is the base's own. Any other tensor (a LoRA bias, DoRA's magnitude,
    embedding LoRA) is not judged: its own shape is returned."""
    for part in ("lora_A", "lora_B"):
        if name.endswith(f".{part}.weight") and len(shape) == 2:
            layer = modules.get(name[:-len(f".{part}.weight")])
            if layer is None or not hasattr(layer, "in_features"):
                return None
            return [shape[0], layer.in_features] if part == "lora_A" else [layer.out_features, shape[1]]
    param = params.get(name)
    return list(param.shape) if param is not None and ".lora_" not in name else shape


def drop_claim_without_output(out: Path) -> None:
    """After a failed describe: the provenance this run recorded, with no finished shard and no journaled batch
    behind it, goes, so that it does not refuse the corrected rerun for settings that produced nothing."""
    journaled = any(p.stat().st_size for p in (out / PROGRESS_DIR).glob("*.jsonl")) if out.is_dir() else False
    if out.is_dir() and not any(out.glob("*.tar")) and not journaled:
        (out / PROVENANCE_FILE).unlink(missing_ok=True)

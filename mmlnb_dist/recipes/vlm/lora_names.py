"""Every name in `vlm.lora.target_modules` and `vlm.lora.modules_to_save` must name a part of the model.

peft matches names by suffix and says nothing about a name that matches nothing: `[q_proj, qproj]` adapted
q_proj alone, `modules_to_save: [lm_haed]` was written into adapter_config.json as if trained, and only a list
matching nothing at all failed, with a ValueError after the run folder existed. `check_lora_names` names each
unmatched entry and the names that exist; `model_skeleton` lets `finetune-vlm`'s check run it on the model's
structure (no weights) before the run folder is taken.
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Iterable, List

import torch

from ...core.errors import ConfigError

if TYPE_CHECKING:
    from .config import LoraConfig, VLMConfig

VISION_PREFIX = "visual."  # (as model.VISION_PREFIX: the vision tower's modules)
ALL_LINEAR = "all-linear"
"""peft's shorthand (LLaMA-Factory's, ms-swift's too): every linear layer of the language model but its output head."""
OUTPUT_HEAD = "lm_head"


def _matches(name: str, entry: str) -> bool:
    return name == entry or name.endswith("." + entry)


def adapts_language(name: str, targets: List[str]) -> bool:
    """Whether the language model's linear layer `name` is adapted by `vlm.lora.target_modules` = `targets`: matched
    by suffix, or any layer but the output head for `[all-linear]` (as peft's `all-linear`)."""
    if targets == [ALL_LINEAR]:
        return not _matches(name, OUTPUT_HEAD)
    return any(_matches(name, t) for t in targets)


def _leaf_names(names: Iterable[str]) -> List[str]:
    """The distinct last parts of module names (`q_proj`, `lm_head`), without the numbered layers."""
    return sorted({n.rsplit(".", 1)[-1] for n in names if n and not n.rsplit(".", 1)[-1].isdigit()})


def _did_you_mean(entries: List[str], names: List[str]) -> str:
    """"; did you mean v_proj (for v_prj)" for the entries a typo away from a name (empty when none is close)."""
    close = [f"{m[0]} (for {e})" for e in entries if (m := difflib.get_close_matches(e, names, n=1, cutoff=0.7))]
    return f"; did you mean {', '.join(close)}" if close else ""


def check_lora_names(model: torch.nn.Module, lora: "LoraConfig") -> None:
    """Refuse (ConfigError) target modules that match no linear layer of the language model, an empty target list
    without the vision tower, and modules to save that match no module, naming the entries and the names
    available."""
    modules = [n for n, _ in model.named_modules() if n]
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    language = [n for n in linear if VISION_PREFIX not in n]
    vision = [n for n in linear if VISION_PREFIX in n]
    if not lora.target_modules and not lora.vision_lora:  # peft refuses a model with nothing to adapt
        raise ConfigError(f"vlm.lora.target_modules is empty and vlm.lora.vision_lora is off: LoRA would adapt no "
                          f"layer; available: {', '.join(_leaf_names(language))} (or vlm.lora.vision_lora=true "
                          f"to adapt the vision tower alone)")
    if ALL_LINEAR in lora.target_modules and len(lora.target_modules) > 1:
        raise ConfigError(f"vlm.lora.target_modules: {ALL_LINEAR} adapts every linear layer of the language model "
                          f"and goes alone, not beside names ({', '.join(lora.target_modules)}): give [{ALL_LINEAR}] "
                          f"or the names")
    unmatched = [t for t in lora.target_modules
                 if t != ALL_LINEAR and not any(_matches(n, t) for n in language)]
    if unmatched:
        in_vision = [t for t in unmatched if any(_matches(n, t) for n in vision)]
        hint = (f"; {', '.join(in_vision)} name(s) the vision tower's layers, adapted with vlm.lora.vision_lora=true "
                f"(its blocks' attn.qkv, attn.proj and MLP)" if in_vision else "")
        raise ConfigError(f"vlm.lora.target_modules: {', '.join(unmatched)} match(es) no linear layer of the language "
                          f"model{_did_you_mean(unmatched, _leaf_names(language))}; available: "
                          f"{', '.join(_leaf_names(language))}{hint}")
    missing = [m for m in lora.modules_to_save if not any(_matches(n, m) for n in modules)]
    if missing:
        candidates = _leaf_names(n for n in modules if VISION_PREFIX not in n and "layers." not in n)
        raise ConfigError(f"vlm.lora.modules_to_save: {', '.join(missing)} match(es) no module of the model"
                          f"{_did_you_mean(missing, candidates)}; modules outside the repeated layers: "
                          f"{', '.join(candidates)}")


def rate_part(param_name: str) -> str:
    """Which learning rate a trainable parameter takes when its part has one (`model.param_groups`): `merger`
    (`vlm.merger_lr`), `vision` (the rest of the vision tower: `vlm.vision_lr`) or `adapter` (`vlm.lr`)."""
    dotted = f".{param_name}"
    if ".visual.merger." in dotted:
        return "merger"
    return "vision" if "." + VISION_PREFIX in dotted else "adapter"


def check_part_rates(model: torch.nn.Module, vcfg: "VLMConfig") -> None:
    """Refuse (ConfigError) `vlm.merger_lr` / `vlm.vision_lr` when no parameter of their part will be trained: not
    by `vlm.lora.train_merger` / `vlm.lora.vision_lora`, nor as a module of `vlm.lora.modules_to_save` (such as the
    tower's `patch_embed`). `model`: the model's structure (`model_skeleton`)."""
    from .config import PART_RATES, part_rate_error

    lora = vcfg.lora
    trained = {"vision"} if lora.vision_lora else set()
    if lora.train_merger:
        trained.add("merger")
    for name, module in model.named_modules():
        if name and any(_matches(name, m) for m in lora.modules_to_save):
            trained.update(rate_part(f"{name}.{p}") for p, _ in module.named_parameters())
    for rate, flag in PART_RATES:
        if getattr(vcfg, rate) is not None and rate.split("_")[0] not in trained:
            raise ConfigError(part_rate_error(rate, flag, getattr(vcfg, rate)))


def tiny_skeleton() -> torch.nn.Module:
    """The `tiny` model's structure from its config alone (the same for every seed and tower), so that its names are
    checked before the model is built: on first use building it trains and writes weights (seconds to minutes)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from .tiny_qwen import build_tiny_tokenizer, tiny_config

    with torch.device("meta"):
        return Qwen2_5_VLForConditionalGeneration._from_config(tiny_config(build_tiny_tokenizer()))


def model_skeleton(path: str) -> torch.nn.Module:
    """The model's structure on the meta device (module names and shapes, no weights: cheap for a 7B)."""
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        return Qwen2_5_VLForConditionalGeneration._from_config(config)

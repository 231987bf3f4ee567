"""The `vlm` settings a fine-tuned VLM was trained with, read from its fine-tuning run, and the check that
`describe` generates with those same settings.

A LoRA adapter learns one prompt at one image size: `finetune-vlm` writes `<run_dir>/adapter` beside
`<run_dir>/config.yaml`, and `export-vlm` records the adapter a merged model holds (`merged_from.json`). Both
`describe` and `predict --vlm` find the run's config here; `describe` refuses settings that differ from it rather
than write text the model never learned to write (`check_describe_settings`), and `predict` takes the run's
section whole.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

from ...core.errors import ConfigError
from ...core.files import load_yaml
from .merge import merged_from
from .model import TINY

if TYPE_CHECKING:
    from .config import VLMConfig

log = logging.getLogger(__name__)

SHAPING_KEYS = ("prompt", "min_pixels", "max_pixels")
"""`vlm` keys that shape what the model sees (prompt text, image tokens): generation must repeat training's."""

TINY_KEYS = ("tiny_seed", "tiny_vision")
"""`vlm` keys that pick the `tiny` base model's weights (ignored for any other model)."""


def training_config_path(vlm: str, adapter: Optional[Union[str, Path]]) -> Optional[Path]:
    """`<run_dir>/config.yaml` of the fine-tuning run that wrote `adapter` (or the adapter merged into the model
    folder `vlm`), or None when there is no such run (an adapter from elsewhere, a base model)."""
    adapter_dir = adapter or merged_from(vlm).get("adapter")
    if not adapter_dir:
        return None
    path = Path(adapter_dir).parent / "config.yaml"
    return path if path.is_file() else None


def trained_vlm_section(path: Path) -> Dict[str, Any]:
    """The raw `vlm:` mapping of a run's config.yaml ({} when it has none)."""
    raw = load_yaml(path) or {}
    section = raw.get("vlm") if isinstance(raw, dict) else None
    return section if isinstance(section, dict) else {}


def _same_model(given: str, trained: str) -> bool:
    # A hub id and a local copy of it share the folder name (as `model.check_adapter_base` compares them).
    return given == trained or (TINY not in (given, trained) and Path(given).name == Path(trained).name)


def settings_differences(vcfg: "VLMConfig", vlm: str, adapter: Optional[Union[str, Path]],
                         trained: Dict[str, Any]) -> List[str]:
    """`vlm.KEY: given X, trained with Y` for every shaping key (and, for an adapter, the base model) that
    differs from the fine-tuning run's `trained` section."""
    given: Dict[str, Any] = {k: getattr(vcfg, k) for k in SHAPING_KEYS}
    if adapter:  # a merged export is its own model: its base and tiny weights are fixed inside it
        given["model"] = vlm
        if vlm == TINY and trained.get("model") == TINY:
            given.update({k: getattr(vcfg, k) for k in TINY_KEYS})
    differences = []
    for key, value in given.items():
        if key not in trained:
            continue
        was = trained[key]
        same = _same_model(str(value), str(was)) if key == "model" else value == was
        if not same:
            differences.append(f"vlm.{key}: given {value!r}, trained with {was!r}")
    return differences


def check_describe_settings(vcfg: "VLMConfig", vlm: str, adapter: Optional[Union[str, Path]],
                            flag: str = "--adapter") -> None:
    """Refuse (ConfigError) to describe with a fine-tuned model under another prompt, other pixel bounds or another
    base than its fine-tuning run recorded, naming each key with both values; nothing to check without a run."""
    path = training_config_path(vlm, adapter)
    if path is None:
        return
    differences = settings_differences(vcfg, vlm, adapter, trained_vlm_section(path))
    if differences:
        what = f"{flag} {adapter}" if adapter else f"--vlm {vlm} (merged from {merged_from(vlm).get('adapter')})"
        raise ConfigError(f"{what} was fine-tuned with other vlm settings than given ({path}): "
                          f"{'; '.join(differences)}. The model only learned to describe with its training prompt "
                          f"and image size: pass --config {path}, or set these keys as there")


def check_export_settings(vcfg: "VLMConfig", base: str, adapter: Union[str, Path]) -> None:
    """Refuse (ConfigError) to merge a fine-tuning run's adapter under other pixel bounds or another base than the
    run recorded: the export saves the processor with the bounds given, so the merged model would resize images as
    the adapter never saw them. The prompt is not part of an export (describe checks it against the run)."""
    path = training_config_path(base, adapter)
    if path is None or merged_from(base).get("adapter"):  # (a merged --base: merge_and_export refuses it by name)
        return
    differences = [d for d in settings_differences(vcfg, base, adapter, trained_vlm_section(path))
                   if not d.startswith("vlm.prompt:")]
    if differences:
        raise ConfigError(f"--adapter {adapter} was fine-tuned with other vlm settings than given ({path}): "
                          f"{'; '.join(differences)}. The merged model keeps the base and image size given here: "
                          f"pass --config {path}, or set these keys as there")

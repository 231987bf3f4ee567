"""A fine-tuned VLM as one model: `mmlnb-dist export-vlm` folds a LoRA adapter into its base and records which
adapter it was, so descriptions the merged model writes count as that adapter's (`fine_tune_sha256`): `predict
--vlm MERGED` then matches a classifier trained on the adapter's descriptions, and `predict` reads the fine-tuning
run's `vlm` section beside the adapter.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from .model import adapter_sha256, load_adapter, load_vlm


MERGED_RECORD = "merged_from.json"
"""What `merge_and_export` writes beside a merged model: its base and the adapter folded into it."""


def merge_and_export(base: str, adapter: Union[str, Path], out: Union[str, Path], *, min_pixels: int,
                     max_pixels: int, dtype: torch.dtype = torch.float32, seed: int = 0,
                     cache_dir: Optional[Path] = None, tiny_vision: str = "random") -> Path:
    """Fold the LoRA weights into the base model and save a plain checkpoint (safetensors + processor), with
    `MERGED_RECORD` naming the base and the adapter (path and digest): its descriptions are that adapter's."""
    model, processor = load_vlm(base, min_pixels=min_pixels, max_pixels=max_pixels, dtype=dtype, seed=seed,
                                cache_dir=cache_dir, tiny_vision=tiny_vision)
    merged = load_adapter(model, adapter).merge_and_unload()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    (out / MERGED_RECORD).write_text(json.dumps({"base": base, "adapter": str(Path(adapter).resolve()),
                                                 "adapter_sha256": adapter_sha256(adapter)}, indent=1))
    return out


def merged_from(model: str) -> Dict[str, Any]:
    """The `MERGED_RECORD` of a merged model folder ({"base", "adapter", "adapter_sha256"}); {} for any other."""
    record = Path(model) / MERGED_RECORD
    return json.loads(record.read_text()) if record.is_file() else {}


def fine_tune_sha256(model: str, adapter: Optional[Union[str, Path]]) -> Optional[str]:
    """The digest of the LoRA fine-tune behind a VLM's descriptions: the adapter's, or for a merged model
    (`export-vlm`) the adapter folded into it; None for a base model. Two writers with the same digest write
    alike, whatever their base is called (`data.text_writer.same_writer`)."""
    return adapter_sha256(adapter) if adapter else merged_from(model).get("adapter_sha256")

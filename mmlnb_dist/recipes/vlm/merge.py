"""A fine-tuned VLM as one model: `mmlnb-dist export-vlm` folds a LoRA adapter into its base and records which
adapter it was, so descriptions the merged model writes count as that adapter's (`fine_tune_sha256`): `predict
--vlm MERGED` then matches a classifier trained on the adapter's descriptions, and `predict` reads the fine-tuning
run's `vlm` section beside the adapter.

An export is built in `.<out>.export-vlm/` beside `out` (held with a `FolderLock`: one export into `out` at a
time) and moved into place whole, its record included: a kill or a full disk leaves `out` as it was, never new
weights under an earlier export's record. A folder that is not an export is never written into; an earlier export
is replaced only when asked (`overwrite`).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ...core.errors import UserError
from ...core.runlock import FolderLock
from .model import adapter_sha256, load_adapter, load_vlm
from .source import check_vlm_loadable

log = logging.getLogger(__name__)


MERGED_RECORD = "merged_from.json"
"""What `merge_and_export` writes beside a merged model: its base and the adapter folded into it."""


class ExportError(UserError):
    """`export-vlm` would write into a folder that is not its own, or replace an export it was not asked to."""


def merge_and_export(base: str, adapter: Union[str, Path], out: Union[str, Path], *, min_pixels: int,
                     max_pixels: int, dtype: torch.dtype = torch.float32, seed: int = 0,
                     cache_dir: Optional[Path] = None, tiny_vision: str = "random", overwrite: bool = False) -> Path:
    """Fold the LoRA weights into the base model and save a plain checkpoint (safetensors + processor), with
    `MERGED_RECORD` naming the base and the adapter (path and digest): its descriptions are that adapter's.
    `out` must be new, empty, or (with `overwrite`) an earlier export; it is replaced whole."""
    out = Path(out)
    if out.resolve() == Path.cwd().resolve():  # ('.': no name to build beside; replaced, it would strand the shell)
        raise ExportError(f"--out {out} is the current folder, which the export would replace whole: give "
                          f"another folder, such as ../{Path.cwd().name}-merged, or run from outside it")
    if out.resolve().is_relative_to(Path(adapter).resolve()):  # (its digest covers every file under it)
        raise ExportError(f"--out {out} is inside --adapter {adapter}: the merged model would become part of the "
                          f"adapter and change its fingerprint (adapter_sha256), which the export records; give a "
                          f"folder outside it, such as {Path(adapter).parent / 'merged'}")
    _refuse_to_write(out, overwrite)  # before the model loads
    held = merged_from(base).get("adapter")
    if held:  # (check_adapter_base only warns when the names differ: LoRA would be folded in twice)
        raise ExportError(f"--base {base} is an export-vlm model that already holds the adapter {held}; merging "
                          f"--adapter {adapter} into it would apply LoRA a second time: give the base model as "
                          f"--base")
    check_vlm_loadable(base, "base model")
    staging = out.with_name(f".{out.name}.export-vlm")
    lock = FolderLock(staging, "export-vlm").acquire()
    try:
        _refuse_to_write(out, overwrite)  # (another export may have finished meanwhile)
        built = staging / "model"
        if built.exists():
            shutil.rmtree(built, ignore_errors=True)
            log.warning("removed %s, what a killed export into %s left", built, out)
        model, processor = load_vlm(base, min_pixels=min_pixels, max_pixels=max_pixels, dtype=dtype, seed=seed,
                                    cache_dir=cache_dir, tiny_vision=tiny_vision)
        merged = load_adapter(model, adapter).merge_and_unload()
        merged.save_pretrained(built, safe_serialization=True)
        processor.save_pretrained(built)
        (built / MERGED_RECORD).write_text(json.dumps({"base": base, "adapter": str(Path(adapter).resolve()),
                                                       "adapter_sha256": adapter_sha256(adapter)}, indent=1))
        if out.exists():  # an empty folder, or the export being replaced: set aside, then dropped
            out.rename(staging / "replaced")
        built.rename(out)
    finally:
        # cleared while still held: after the release, an export into the same folder may already be building in it
        shutil.rmtree(staging, ignore_errors=True)
        lock.release()
    return out


def _refuse_to_write(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a folder")
    if not any(out.iterdir()):
        return
    record = merged_from(str(out))
    if not record:
        raise ExportError(f"--out {out} is not empty and is not an export-vlm output (no {MERGED_RECORD}): nothing "
                          f"was written; give a new folder")
    if not overwrite:
        raise ExportError(f"--out {out} already holds a merged model of the adapter {record.get('adapter')} "
                          f"(sha256 {str(record.get('adapter_sha256'))[:12]}); give --overwrite to replace it, or "
                          f"another --out")


def merged_from(model: str) -> Dict[str, Any]:
    """The `MERGED_RECORD` of a merged model folder ({"base", "adapter", "adapter_sha256"}); {} for any other."""
    record = Path(model) / MERGED_RECORD
    return json.loads(record.read_text()) if record.is_file() else {}


def fine_tune_sha256(model: str, adapter: Optional[Union[str, Path]]) -> Optional[str]:
    """The digest of the LoRA fine-tune behind a VLM's descriptions: the adapter's, or for a merged model
    (`export-vlm`) the adapter folded into it; None for a base model. Two writers with the same digest write
    alike, whatever their base is called (`data.text_writer.same_writer`)."""
    return adapter_sha256(adapter) if adapter else merged_from(model).get("adapter_sha256")

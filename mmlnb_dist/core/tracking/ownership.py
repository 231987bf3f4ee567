"""Whose model an `--export` folder is: `register --run A --export B/export` registered B's weights under A's
metrics, lineage and model card without a word.

An export records no run of its own (its `model_config.json` names the classes, encoders and model settings, which
two runs of one config share), so ownership is decided from what the runs keep: the run's own export
(`<run folder>/export`) when it is still there (the given folder must hold the same files: a copy of it, shipped
elsewhere), else the run folder the given export sits in (its tracking record must name the same MLflow run).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..errors import UserError
from .registry import EXPORT_FOLDER
from .versions import artifacts_digest

RUN_RECORD = Path("tracking") / "train.json"
"""The MLflow run a run folder's training logged to (`journal.run_record_path(run_dir, "train")`)."""


class ExportOwnerError(UserError):
    """`--export` is another run's model; the message names both."""


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _folder_of(export: Path) -> Optional[Path]:
    """The run folder `export` was written in (`<run folder>/export`, beside its config.yaml), if it is one."""
    parent = export.resolve().parent
    return parent if export.resolve().name == EXPORT_FOLDER and (parent / "config.yaml").is_file() else None


def _recorded_run_id(run_dir: Path) -> Optional[str]:
    try:
        return json.loads((run_dir / RUN_RECORD).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def check_export_owner(run_id: str, run_dir: Optional[Path], export: Path) -> None:
    """Refuse (`ExportOwnerError`, naming both) an `export` that is not run `run_id`'s own model; `run_dir` is the
    run's folder (the `--run` folder, or the run's `run_dir` tag), None when unknown. Accepted: the run's own
    `<run_dir>/export`, a copy of it (same files), or, when the run's own export is gone, an export in a run folder
    recorded as the same MLflow run (the folder moved) or in no run folder at all (nothing records another owner)."""
    export = Path(export)
    own = Path(run_dir) / EXPORT_FOLDER if run_dir is not None else None
    if own is not None and _same(export, own):
        return
    home = _folder_of(export)
    home_run = _recorded_run_id(home) if home is not None else None
    whose = (f"it is the export of run folder {home}" + (f" (MLflow run {home_run})" if home_run else "")
             if home is not None else "")
    if own is not None and own.is_dir():
        if artifacts_digest({"export": str(export)}) == artifacts_digest({"export": str(own)}):
            return  # a copy of the run's own export
        whose = (whose + ", and its" if whose else "its") + f" files differ from the run's own export {own}"
    elif home is None or home_run == run_id:
        return  # the run's own folder, moved since it was tagged; or no other run's folder to tell
    raise ExportOwnerError(
        f"--export {export} is not the model of run {run_id}"
        f"{f' ({run_dir})' if run_dir is not None else ''}: {whose}; registering it would give it this run's "
        f"metrics, data lineage and model card. Register its own run (--run {home or 'RUN'}) or leave --export out")

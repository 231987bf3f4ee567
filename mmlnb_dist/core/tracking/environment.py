"""What it takes to reproduce a run: the git commit, package versions and the device, as MLflow tags."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Dict

PACKAGES = ("torch", "torchvision", "deepspeed", "transformers", "peft", "mlflow", "ray", "webdataset",
            "torchmetrics", "pydantic", "numpy")


def environment_tags() -> Dict[str, str]:
    """Git commit, package versions and the device: what it takes to reproduce a run."""
    from importlib import metadata

    tags: Dict[str, str] = {"python": platform.python_version(), "host.platform": platform.platform()}
    repo = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if commit:
            tags["mlflow.source.git.commit"] = commit
            tags["git.commit"] = commit
            tags["git.dirty"] = str(bool(dirty)).lower()
    except (OSError, subprocess.SubprocessError):
        pass
    for name in PACKAGES:
        try:
            tags[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    tags["device"] = _device_name()
    return tags


def _device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return f"cuda x{n}: {torch.cuda.get_device_name(0)}"
    except Exception:  # torch missing or a broken driver: the device tag is informative only
        pass
    return f"cpu: {platform.processor() or platform.machine()} x{os.cpu_count()}"

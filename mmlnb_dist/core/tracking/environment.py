"""What it takes to reproduce a run: the git commit, package versions and the device, as MLflow tags."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Dict

PACKAGES = ("mmlnb-dist", "torch", "torchvision", "deepspeed", "transformers", "peft", "mlflow", "ray", "webdataset",
            "torchmetrics", "pydantic", "numpy")


def environment_tags() -> Dict[str, str]:
    """Git commit, package versions and the device: what it takes to reproduce a run."""
    from importlib import metadata

    tags: Dict[str, str] = {"python": platform.python_version(), "host.platform": platform.platform()}
    tags.update(_git_tags(Path(__file__).resolve().parents[2]))
    for name in PACKAGES:
        try:
            tags[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    tags["device"] = _device_name()
    return tags


def _git_tags(package: Path) -> Dict[str, str]:
    """The commit of the checkout `package` (the mmlnb_dist folder) is tracked in, and whether it differs from it
    (a changed tracked file, or an untracked file in the package: code that ran but is in no commit). `unknown`
    when the package is in no checkout: installed from a wheel, whose site-packages may sit in another repository
    (a project's `.venv`), where `git rev-parse HEAD` answers with that project's commit."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=5)
        if done.returncode:
            raise subprocess.SubprocessError(done.stderr.strip())
        return done.stdout.strip()

    try:
        # the package's own files must be in the repository's index: a folder ignored or untracked is not its code
        if not git("ls-files", "--", "."):
            return {"git.commit": "unknown"}
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no") or git(
            "status", "--porcelain", "--untracked-files=all", "--", ".")
    except (OSError, subprocess.SubprocessError):  # no git, no repository, no commit yet
        return {"git.commit": "unknown"}
    return {"mlflow.source.git.commit": commit, "git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


def _device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return f"cuda x{n}: {torch.cuda.get_device_name(0)}"
    except Exception:  # torch missing or a broken driver: the device tag is informative only
        pass
    return f"cpu: {platform.processor() or platform.machine()} x{os.cpu_count()}"

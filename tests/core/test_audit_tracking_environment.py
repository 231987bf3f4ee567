"""Mutation-audit guards of the reproducibility tags every MLflow run gets (`core/tracking/environment.py`): the
commit (for MLflow's UI and our own), whether the work tree had uncommitted changes, package versions and device."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata

from mmlnb_dist.core.tracking import environment
from mmlnb_dist.core.tracking.environment import environment_tags


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_commit_and_whether_tracked_files_changed_are_tagged(tmp_path, monkeypatch):
    """The checkout the package runs from: its HEAD commit, and `git.dirty` true only once a tracked file changed
    (an untracked file does not count)."""
    repo = tmp_path / "checkout"
    (repo / "mmlnb_dist" / "core" / "tracking").mkdir(parents=True)
    monkeypatch.setattr(environment, "__file__", str(repo / "mmlnb_dist" / "core" / "tracking" / "environment.py"))
    _git(tmp_path, "init", "-q", str(repo))
    (repo / "a.txt").write_text("1")
    (repo / "mmlnb_dist" / "core" / "tracking" / "environment.py").write_text("# the package, tracked\n")
    _git(repo, "add", "a.txt", "mmlnb_dist")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "untracked.txt").write_text("x")
    tags = environment_tags()
    assert tags["git.commit"] == tags["mlflow.source.git.commit"] == _git(repo, "rev-parse", "HEAD")
    assert tags["git.dirty"] == "false"
    (repo / "a.txt").write_text("2")
    assert environment_tags()["git.dirty"] == "true"


def test_package_versions_python_and_device_are_tagged(monkeypatch):
    """Installed packages get `version.<name>` (a missing one is left out), and the device names CUDA or the CPU."""
    monkeypatch.setattr(environment, "PACKAGES", ("mlflow", "no-such-package-mmlnb"))
    tags = environment_tags()
    assert tags["version.mlflow"] == metadata.version("mlflow") and "version.no-such-package-mmlnb" not in tags
    assert tags["python"] == platform.python_version()
    assert tags["device"].startswith(("cpu: ", "cuda x"))

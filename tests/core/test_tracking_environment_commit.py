"""The commit a run is tagged with is the package's own, or `unknown`: installed from a wheel into a virtual
environment inside another git repository (a project with its `.venv`), `git rev-parse HEAD` from site-packages
answered with that project's commit, and the run was tagged `git.commit=<a commit that is not the code it ran>`.
An untracked new module in the package (code that ran, in no commit) counts as dirty."""
from __future__ import annotations

import subprocess

from mmlnb_dist.core.tracking import environment
from mmlnb_dist.core.tracking.environment import environment_tags


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def _install_at(monkeypatch, package_parent):
    module = package_parent / "mmlnb_dist" / "core" / "tracking" / "environment.py"
    module.parent.mkdir(parents=True)
    module.write_text("# the module\n")
    monkeypatch.setattr(environment, "__file__", str(module))
    return package_parent / "mmlnb_dist"


def test_a_wheel_in_a_venv_inside_another_repository_is_not_tagged_with_its_commit(tmp_path, monkeypatch):
    project = tmp_path / "project"
    _git(tmp_path, "init", "-q", str(project))
    (project / ".gitignore").write_text(".venv/\n")
    (project / "train.py").write_text("print('mine')\n")
    _git(project, "add", ".gitignore", "train.py")
    _git(project, "commit", "-q", "-m", "the user's project")
    _install_at(monkeypatch, project / ".venv" / "lib" / "python3.11" / "site-packages")
    tags = environment_tags()
    assert tags.get("git.commit") == "unknown", tags
    assert "mlflow.source.git.commit" not in tags and "git.dirty" not in tags, tags


def test_outside_any_repository_the_commit_is_unknown(tmp_path, monkeypatch):
    _install_at(monkeypatch, tmp_path / "site-packages")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # tmp_path may itself sit in a repository
    tags = environment_tags()
    assert tags.get("git.commit") == "unknown" and "mlflow.source.git.commit" not in tags, tags


def test_an_untracked_module_in_the_package_makes_the_checkout_dirty(tmp_path, monkeypatch):
    repo = tmp_path / "checkout"
    _git(tmp_path, "init", "-q", str(repo))
    package = _install_at(monkeypatch, repo)
    _git(repo, "add", "mmlnb_dist")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "notes.txt").write_text("not code")  # untracked beside the package: not dirty
    assert environment_tags()["git.dirty"] == "false"
    (package / "new_module.py").write_text("X = 1\n")
    tags = environment_tags()
    assert tags["git.dirty"] == "true" and tags["git.commit"] == _git(repo, "rev-parse", "HEAD")

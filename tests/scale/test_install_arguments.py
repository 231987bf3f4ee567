"""launch/install.sh takes one option, --test. Any other argument (a typo: `--tests`, `-t`) was ignored: the stack
was installed without what the tests need, and the user learned it from pytest's import errors later. It is now
refused before anything is installed. Run on a copy of the script beside a stand-in `.venv/bin/python` that records
the pip commands instead of running them (nothing is installed, no network)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from support.fusion import ROOT

RECORDER = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../../calls"
"""


@pytest.fixture
def checkout(tmp_path):
    (tmp_path / "launch").mkdir()
    shutil.copy(ROOT / "launch" / "install.sh", tmp_path / "launch" / "install.sh")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text(RECORDER)
    python.chmod(0o755)
    return tmp_path


def _install(checkout, *args):
    return subprocess.run(["bash", str(checkout / "launch" / "install.sh"), *args], capture_output=True, text=True,
                          timeout=60)


def _calls(checkout):
    calls = checkout / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("args", [["--tests"], ["-t"], ["--test", "extra"]])
def test_an_unknown_argument_is_refused_before_anything_is_installed(checkout, args):
    done = _install(checkout, *args)
    assert done.returncode == 2, done.stderr
    assert "usage: bash launch/install.sh [--test]" in done.stderr, done.stderr
    assert _calls(checkout) == []


@pytest.mark.parametrize("args, test_deps", [([], False), (["--test"], True)])
def test_the_known_forms_still_install(checkout, args, test_deps):
    done = _install(checkout, *args)
    assert done.returncode == 0, done.stderr
    calls = _calls(checkout)
    assert any("requirements/stack.txt" in c for c in calls), calls
    assert any("requirements/test.txt" in c for c in calls) is test_deps, calls

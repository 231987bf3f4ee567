"""`shards build --classes` takes comma-separated class names, as text: class folders named `1,2,3` (tumour
grades) or `yes,no` were refused ("data.classes.0: Input should be a valid string (got 1)"), because the flag was
passed on as the YAML list `[1,2,3]`, whose items YAML reads as numbers and booleans."""
from __future__ import annotations

import json

import pytest

from support.cli import run_cli
from support.shards import write_patch_folder


@pytest.mark.parametrize("classes", [("1", "2", "3"), ("yes", "no", "null"), ("UD", "PD", "D")])
def test_class_names_are_taken_as_typed(tmp_path, classes):
    src = write_patch_folder(tmp_path / "src", per_class=2, classes=classes)
    out = tmp_path / "out"
    code, _, err = run_cli(["shards", "build", "--input", str(src), "--out", str(out), "--no-progress",
                            "--classes", " , ".join(classes), "data.build.val_fraction=0",
                            "data.build.test_fraction=0"])
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["classes"] == list(classes)

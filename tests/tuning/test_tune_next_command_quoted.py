"""The command `tune` prints to train the best config is usable as printed: a search stored under a folder whose
name holds a space (`tune.storage_path="/data/my runs"`) printed `mmlnb-dist train --config /data/my runs/...`,
which the shell splits into two arguments. The path is shell-quoted now (a plain path prints as it was)."""
from __future__ import annotations

import contextlib
import io
import re
import shlex

import pytest

from mmlnb_dist.cli import main


@pytest.mark.parametrize("folder, recipe, command", [("my runs", "fusion", "train"), ("it's", "vlm-fusion", "pipeline"),
                                                     ("plain", "fusion", "train")])
def test_the_printed_command_gives_the_best_config_as_one_argument(tmp_path, monkeypatch, folder, recipe, command):
    from mmlnb_dist.tuning import driver

    best = tmp_path / folder / "best.yaml"
    best.parent.mkdir()
    best.write_text(f"train:\n  recipe: {'fusion' if recipe == 'vlm-fusion' else recipe}\n")
    monkeypatch.setattr(driver, "run_search", lambda cfg, space: {"trials": 1, "errored": 0, "diverged": 0,
                                                                  "best_config": str(best)})
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["tune", "--config", "cpu-demo", f"tune.recipe={recipe}"]) == 0
    printed = re.search(r"\(train it: (.*)\)$", out.getvalue(), re.M)
    assert printed, out.getvalue()
    assert shlex.split(printed.group(1)) == ["mmlnb-dist", command, "--config", str(best)]

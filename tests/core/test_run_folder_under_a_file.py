"""A run folder where a file stands (`run.output_dir` naming a file, or `run.name` taken by one) is refused by the
folder lock every recipe takes, naming the file, before the recipe's checks: `finetune-vlm`, `train` through the
recipe runner, a study row... met a NotADirectoryError / FileExistsError traceback (each command had its own check,
or none)."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.files import refuse_file_in_the_way
from mmlnb_dist.core.recipe import run
from mmlnb_dist.core.runlock import FolderLock

from support.fusion import CPU_DEMO


@pytest.mark.parametrize("inside", [(), ("r1",), ("r1", "tracking")])
def test_a_file_at_or_above_the_folder_is_named(tmp_path, inside):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    folder = blocker.joinpath(*inside)
    with pytest.raises(UserError, match=rf"finetune-vlm: its folder: {blocker} is a file, not a folder"):
        FolderLock(folder, "finetune-vlm").refuse_if_held()
    with pytest.raises(UserError, match=rf"{blocker} is a file, not a folder"):
        FolderLock(folder, "finetune-vlm").acquire()
    assert blocker.read_text() == "not a folder"
    refuse_file_in_the_way(tmp_path / "free" / "r1", "run.output_dir")  # nothing in the way: no error


class _Recipe:
    """A recipe whose check must not be reached."""

    name = "train"

    @staticmethod
    def check(cfg, env):
        raise AssertionError("the recipe's checks ran although its folder cannot be made")


def test_the_recipe_runner_refuses_before_the_recipe_checks(tmp_path):
    from mmlnb_dist.config import load_config

    (tmp_path / "runs").write_text("x")
    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path / 'runs'}", "run.name=r1", "tracking.backends=[stdout]"])
    with pytest.raises(UserError, match=rf"train: its folder: {tmp_path / 'runs'} is a file, not a folder"):
        run(_Recipe, cfg)

"""A run folder moved (the runs folder copied to another disk, a run renamed) resumes where it is: `config.yaml` is
read from the folder being resumed, so the stored `run.output_dir` and `run.name` only said where it lay, yet a
resume with the new place was refused ("run.output_dir: '/a' -> '/b' ... Resume with the stored settings"), which
would have resumed nothing there. The move is recorded in `resume_changes.json`; the run continues at its next
epoch."""
from __future__ import annotations

import json
import shutil

from support.fusion import epoch_records, make_shards, tiny_config

ONE_PHASE = ["fusion.curriculum.ramp_start=0", "fusion.curriculum.ramp_end=1",
             "fusion.curriculum.phases=[{start_epoch: 0}]"]


def test_a_run_folder_moved_and_renamed_resumes_where_it_lies(tmp_path):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = make_shards(tmp_path / "a", n=48, size=32)
    run(FusionRecipe, tiny_config(shards, tmp_path / "runs", "r", ["train.epochs=1", *ONE_PHASE]))
    shutil.move(str(tmp_path / "runs"), str(tmp_path / "disk2"))
    (tmp_path / "disk2" / "r").rename(tmp_path / "disk2" / "r-renamed")
    run_dir = tmp_path / "disk2" / "r-renamed"

    run(FusionRecipe, tiny_config(shards, tmp_path / "disk2", "r-renamed",
                                  ["train.epochs=2", "run.resume=true", *ONE_PHASE]))
    assert [r["epoch"] for r in epoch_records(run_dir)] == [0, 1]  # continued at epoch 1, not started over
    changed = json.loads((run_dir / "resume_changes.json").read_text())["resumes"][-1]["changed"]
    assert changed["run.output_dir"] == [str(tmp_path / "runs"), str(tmp_path / "disk2")]
    assert changed["run.name"] == ["r", "r-renamed"]
    assert not (tmp_path / "runs").exists()  # nothing written where it lay before

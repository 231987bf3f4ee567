"""Two `evaluate` runs of one model at once kept their MLflow journal in one folder (`<run>-evaluate`): the second
moved the first's journal aside while it was still writing, `tracking sync` then made a phantom KILLED run, and the
val evaluation's MLflow run held the test evaluation's confusion matrix. Each split's evaluation now has its own
folder (`RunConfig.evaluation_dir`), held for the command: val and test evaluate side by side, and a second
evaluation of the same split stops at once naming the first."""
from __future__ import annotations

import json

from mmlnb_dist.cli import main
from mmlnb_dist.core.runlock import FolderLock

from support.fusion import make_shards, tiny_config


def test_evaluations_of_two_splits_keep_their_own_runs_and_one_split_is_evaluated_once_at_a_time(tmp_path, capsys):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = make_shards(tmp_path, n=45, size=32, test_fraction=0.2)
    cfg = tiny_config(shards, tmp_path / "runs", "ev", ["tracking.backends=[stdout, mlflow]", "train.epochs=1",
                                                        "data.loader.image_size=32"])
    export = run(FusionRecipe, cfg)["export_dir"]
    capsys.readouterr()
    with FolderLock(cfg.run.evaluation_dir("val"), "evaluate"):  # an evaluation of val running
        assert main(["evaluate", "--export", export, "--split", "val", "--json"]) == 2
        assert f"{cfg.run.evaluation_dir('val')} is in use by `evaluate`" in capsys.readouterr().err
        assert main(["evaluate", "--export", export, "--split", "test", "--json"]) == 0
    assert main(["evaluate", "--export", export, "--split", "val", "--json"]) == 0
    runs = {}
    for split in ("val", "test"):
        journal = cfg.run.evaluation_dir(split) / "tracking" / "evaluate.json"
        runs[split] = json.loads(journal.read_text())["run_id"]
    assert runs["val"] != runs["test"]

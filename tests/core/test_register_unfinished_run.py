"""`register --run` of a run that did not finish: a finished run resumed for more epochs and killed keeps the
`export/` of its earlier finish (and its folder's export record matches it), so `register` published the shorter
run's model under the run whose MLflow status is KILLED and whose config.yaml describes the longer run, and moved
the alias to it. A run that is not FINISHED is now refused, naming its status and how to finish it."""
from __future__ import annotations

import pytest

from support.cli import run_cli
from support.fusion import make_shards, tiny_config


class Killed(KeyboardInterrupt):
    pass


def test_a_run_killed_after_an_earlier_finish_is_not_registered(tmp_path, monkeypatch):
    import mlflow

    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = make_shards(tmp_path, n=45, size=32)
    args = ["tracking.backends=[mlflow]", "data.loader.image_size=32"]
    run(FusionRecipe, tiny_config(shards, tmp_path / "runs", "r", [*args, "train.epochs=1"]))
    monkeypatch.setattr(FusionRecipe, "train_epoch", lambda self, epoch: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):  # the continuation dies in its second epoch
        run(FusionRecipe, tiny_config(shards, tmp_path / "runs", "r", [*args, "train.epochs=2", "run.resume=true"]))
    monkeypatch.undo()
    folder = tmp_path / "runs" / "r"
    assert (folder / "export").is_dir()  # the earlier finish's

    code, _, err = run_cli(["register", "--run", str(folder), "--name", "nb"])
    assert code == 2 and "KILLED" in err and "run.resume=true" in err, err
    uri = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    assert not mlflow.MlflowClient(uri, registry_uri=uri).search_registered_models()

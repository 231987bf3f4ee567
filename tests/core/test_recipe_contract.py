"""The contract a new recipe relies on: a recipe written outside the package (tests/support/probe.py: a
multi-label linear probe with BCE on a tiny multi-hot shard set), trains, checkpoints, resumes exactly and logs
through `core/` and `data/` alone, without any change to them."""
from __future__ import annotations

import pytest
import torch

from support.probe import LinearProbe, multi_hot_shards, probe_config


class Killed(KeyboardInterrupt):
    pass


def test_a_recipe_outside_the_package_trains_checkpoints_resumes_and_logs(tmp_path, monkeypatch):
    import mlflow

    from mmlnb_dist.core.checkpoint import fp32_state_dict_from_checkpoint
    from mmlnb_dist.core.recipe import run

    shards = multi_hot_shards(tmp_path)
    full = run(LinearProbe, probe_config(shards, tmp_path / "full"))

    save = LinearProbe.save_checkpoint

    def killed_saving_epoch_1(recipe, epoch):  # after epoch 1's metrics were logged, before its checkpoint
        if epoch == 1:
            raise Killed()
        save(recipe, epoch)

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(LinearProbe, "save_checkpoint", killed_saving_epoch_1)
        run(LinearProbe, probe_config(shards, tmp_path / "killed"))
    resumed = run(LinearProbe, probe_config(shards, tmp_path / "killed", "run.resume=true"))
    assert LinearProbe.statuses[-3:] == ["FINISHED", "KILLED", "FINISHED"]

    # exact resume: the same weights and metrics as the uninterrupted run
    _, a = fp32_state_dict_from_checkpoint(tmp_path / "full" / "probe" / "checkpoints")
    tag, b = fp32_state_dict_from_checkpoint(tmp_path / "killed" / "probe" / "checkpoints")
    assert tag == "epoch-0002" and a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["val/loss"] == full["val/loss"] and resumed["val/micro_f1"] == full["val/micro_f1"]
    assert full["val/micro_f1"] > 0.7  # the probe learns the colours (chance is about 0.5)

    # retention through the manager: the newest two checkpoints are kept
    assert sorted(p.name for p in (tmp_path / "full" / "probe" / "checkpoints").glob("epoch-*")) == \
        ["epoch-0001", "epoch-0002"]

    # logged through core.tracking: the metric history and the learning-rate schedule are in MLflow
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'full' / 'mlflow.db').resolve()}")
    (logged,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert logged.info.status == "FINISHED" and logged.data.tags["recipe"] == "probe"
    history = client.get_metric_history(logged.info.run_id, "train/lr")
    lrs = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert lrs[0] < max(lrs) and lrs[-1] < max(lrs)  # the warmup and the cosine decay
    assert len(client.get_metric_history(logged.info.run_id, "val/micro_f1")) == 3

    # the killed-and-resumed run's MLflow run reads as the uninterrupted one: epoch 1 ran twice (killed after its
    # validation, before its checkpoint), yet every metric has one value per step, at the same steps
    def steps(root):
        client = mlflow.MlflowClient(f"sqlite:///{(root / 'mlflow.db').resolve()}")
        (only,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
        return {key: sorted(m.step for m in client.get_metric_history(only.info.run_id, key))
                for key in only.data.metrics}

    full_steps, resumed_steps = steps(tmp_path / "full"), steps(tmp_path / "killed")
    assert resumed_steps == full_steps
    assert all(len(s) == len(set(s)) for s in full_steps.values()), full_steps

"""The champion alias compares like with like: a CLIP run whose F1 was computed on another top-k (`clip.top_k`)
than the holder's is not compared, and the reason names the setting and both values. The alias used to move to a
version with identical weights because its top-5 F1 "beat" the holder's top-3 F1."""
from __future__ import annotations

import pytest

from support.clip_registry import registered_run

METRIC = "best/val/micro_f1"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    yield from registered_run(tmp_path_factory.mktemp("clip-settings"))


def _run_with_top_k(client, trained, value: float, top_k: int) -> str:
    """Another 'training run' of the same export, scored on the same val set at `clip.top_k` = top_k."""
    src = client.get_run(trained["run_id"])
    run = client.create_run(src.info.experiment_id, tags={"run_dir": src.data.tags["run_dir"]})
    client.log_inputs(run.info.run_id, datasets=list(src.inputs.dataset_inputs))
    client.log_param(run.info.run_id, "clip.top_k", str(top_k))
    client.log_metric(run.info.run_id, "val/micro_f1", value)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_alias_stays_when_the_challenger_was_scored_at_another_top_k(trained):
    import mlflow

    from mmlnb_dist.recipes.clip.pyfunc_model import register_run

    client = mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])

    def register(value, top_k):
        return register_run(_run_with_top_k(client, trained, value, top_k), "clip-topk", alias="champion",
                            tracking_uri=trained["uri"], metric=METRIC, mode="max")

    first = register(0.5, 3)
    assert first.alias_moved
    other_k = register(0.9, 5)  # a higher F1, but at top-5: not the same metric
    assert not other_k.alias_moved
    assert "clip.top_k" in other_k.reason and "3" in other_k.reason and "5" in other_k.reason, other_k.reason
    same_k = register(0.6, 3)
    assert same_k.alias_moved, same_k.reason
    assert str(client.get_model_version_by_alias("clip-topk", "champion").version) == same_k.version


def _run_with_pos_weight(client, trained, metric: str, value: float, pos_weight) -> str:
    """Another 'training run' of the same export at the same top-k, its loss weighted by `pos_weight`."""
    src = client.get_run(trained["run_id"])
    run = client.create_run(src.info.experiment_id, tags={"run_dir": src.data.tags["run_dir"]})
    client.log_inputs(run.info.run_id, datasets=list(src.inputs.dataset_inputs))
    client.log_param(run.info.run_id, "clip.top_k", "3")
    client.log_param(run.info.run_id, "clip.pos_weight", str(pos_weight))
    client.log_metric(run.info.run_id, metric.replace("best/", ""), value)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_a_loss_weighted_by_another_pos_weight_is_not_compared(trained):
    """`clip.pos_weight` scales the BCE loss (a weight of 5 on every positive: a loss several times higher for the
    same predictions): a loss-chosen alias moved to a worse model whose loss was merely unweighted. Losses of other
    weights are not compared; the top-k metrics, which no weight changes, still are."""
    import mlflow

    from mmlnb_dist.recipes.clip.pyfunc_model import register_run

    client = mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])

    def register(name, metric, mode, value, pos_weight):
        return register_run(_run_with_pos_weight(client, trained, metric, value, pos_weight), name,
                            alias="champion", tracking_uri=trained["uri"], metric=metric, mode=mode)

    weighted = [5.0] * 6
    assert register("clip-posw-loss", "best/val/loss", "min", 0.9, weighted).alias_moved
    other = register("clip-posw-loss", "best/val/loss", "min", 0.3, None)  # lower, but unweighted
    assert not other.alias_moved
    assert "clip.pos_weight" in other.reason and "5.0" in other.reason, other.reason
    assert register("clip-posw-loss", "best/val/loss", "min", 0.8, weighted).alias_moved

    assert register("clip-posw-f1", METRIC, "max", 0.5, weighted).alias_moved
    assert register("clip-posw-f1", METRIC, "max", 0.6, None).alias_moved  # F1 is the same metric whatever weights

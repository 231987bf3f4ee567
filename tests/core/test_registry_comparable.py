"""The alias moves when the new version's metric beats the holder's. Both are validation scores: compared across
two different validation sets (a pipeline rerun on a new shard set) they say nothing about which model is
better, yet the alias stayed with (or moved to) whichever set was easier. Now the scores are compared only when
both runs were validated on one set of patches; otherwise the holder keeps the alias and the reason says why.
Descriptions are part of the model: a described shard set is the set its descriptions were written for. A run that
logged no validation set was scored on an unknown one: it is never compared."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.tracking.journal import apply_event
from support.fusion import make_shards, tiny_config

METRIC = "best/val/balanced_accuracy"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One tiny tracked fusion run (its export is what every version registers)."""
    import mlflow

    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    root = tmp_path_factory.mktemp("comparable")
    shards = make_shards(root, n=60, size=32)
    cfg = tiny_config(shards, root / "runs", "cmp", ["tracking.backends=[mlflow]", "train.epochs=1",
                                                      "data.loader.image_size=32"])
    run(FusionRecipe, cfg)
    uri = f"sqlite:///{(root / 'runs' / 'mlflow.db').resolve()}"
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    (trained,) = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    return {"client": client, "uri": uri, "run": trained}


def _val_spec(name: str, manifest_sha256: str, described_from: str = None):
    provenance = {"describe": {"model": "tiny", "source_manifest_sha256": described_from}} if described_from else {}
    return {"name": f"{name}:val", "digest": manifest_sha256[:16], "source": f"/data/{name}", "context": "val",
            "profile": {"num_samples": 12, "manifest_sha256": manifest_sha256, "provenance": provenance}}


def _version(store, name: str, value: float, val_spec=None):
    """Register another 'training run' of the same export, scored `value` on the validation set `val_spec`."""
    from mmlnb_dist.recipes.fusion.pyfunc_model import register_run

    client, src = store["client"], store["run"]
    run = client.create_run(src.info.experiment_id, tags={"run_dir": src.data.tags["run_dir"]})
    client.log_metric(run.info.run_id, METRIC, value)
    if val_spec is not None:
        apply_event(client, run.info.run_id, {"op": "inputs", "datasets": [val_spec]})
    client.set_terminated(run.info.run_id)
    return register_run(run.info.run_id, name, alias="champion", tracking_uri=store["uri"], metric=METRIC,
                        mode="max")


def test_a_score_on_another_validation_set_does_not_move_the_alias(store):
    first = _version(store, "nb-sets", 0.70, _val_spec("v1", "a" * 64))
    harder = _version(store, "nb-sets", 0.95, _val_spec("v2", "b" * 64))
    assert first.alias_moved and not harder.alias_moved
    assert "not comparable" in harder.reason and "v1:val" in harder.reason and "v2:val" in harder.reason
    assert "version 1 keeps 'champion'" in harder.reason


def test_scores_on_one_validation_set_are_compared(store):
    _version(store, "nb-same", 0.70, _val_spec("v1", "a" * 64))
    assert _version(store, "nb-same", 0.95, _val_spec("v1", "a" * 64)).alias_moved


def test_a_described_set_counts_as_the_set_its_descriptions_were_written_for(store):
    """Two pipelines on one shard set with other VLM settings: other described sets, the same patches."""
    _version(store, "nb-described", 0.70, _val_spec("v1-described", "c" * 64, described_from="a" * 64))
    assert _version(store, "nb-described", 0.95, _val_spec("v1-described", "d" * 64, described_from="a" * 64)) \
        .alias_moved
    plain = _version(store, "nb-described", 0.99, _val_spec("v1", "a" * 64))  # the undescribed set itself
    assert plain.alias_moved


def test_a_run_that_logged_no_validation_set_is_not_compared(store):
    """Scored on an unknown set (an import of a folder that recorded none, tracking.log_dataset=false): the score
    of an unknown set beat scores of known ones (a `tracking import` run moved the alias across two sets)."""
    _version(store, "nb-unknown", 0.70)
    known = _version(store, "nb-unknown", 0.95, _val_spec("v2", "b" * 64))
    assert not known.alias_moved and "no 'val' dataset input" in known.reason
    assert not _version(store, "nb-unknown", 0.99).alias_moved  # neither side: unknown too


def test_a_registry_metric_that_is_a_loss_is_minimised_unless_told_otherwise():
    """`tracking.register_metric=best/val/loss` kept `tracking.register_mode`'s default max: the alias moved to
    whichever version had the higher loss. The mode now follows the metric unless set (as `register --metric` and
    `tune.mode` do)."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.tracking.registry import alias_selection
    from mmlnb_dist.recipes import RECIPES

    def chosen(*overrides):
        cfg = load_config("cpu-demo", list(overrides))
        return alias_selection(cfg.tracking, cfg.train.best_metric, RECIPES["fusion"].lower_is_better)

    assert chosen("tracking.register_metric=best/val/loss") == ("best/val/loss", "min")
    assert chosen("tracking.register_metric=best/val/auroc") == ("best/val/auroc", "max")
    assert chosen("tracking.register_metric=best/val/loss", "tracking.register_mode=max") == ("best/val/loss", "max")
    assert chosen() == ("best/val/balanced_accuracy", "max")


def test_the_reason_gives_scores_to_four_significant_places_or_as_many_as_tell_them_apart(store):
    # a reason is read by people (the pipeline's report and log, `register`'s output): 0.6666666666666666 was
    # printed in full; two scores alike to 4 places keep the digits that tell them apart
    spec = _val_spec("same", "c" * 64)
    _version(store, "nb-digits", 1 / 3, spec)
    better = _version(store, "nb-digits", 2 / 3, spec)
    assert better.alias_moved and f"{METRIC} 0.6667 beats 0.3333 (version 1)" in better.reason, better.reason
    assert better.value == 2 / 3 and better.previous_value == 1 / 3  # the record keeps the full values
    close = _version(store, "nb-digits", 2 / 3 - 1e-6, spec)
    assert not close.alias_moved and f"{METRIC} 0.666666 does not beat 0.666667 (version 2" in close.reason, \
        close.reason

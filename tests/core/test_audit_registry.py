"""Mutation-audit guards of the registry's alias rule and its lineage checks: the alias moves only to a strictly
better score (the direction the metric's mode says, a tie keeps the holder, a missing score never wins), only
between runs scored alike, and a version is given back only for the same run and the same files."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking import card, registry
from mmlnb_dist.core.tracking.lineage import (DataChangedError, check_resumed_datasets, metric_split, not_comparable,
                                              record_datasets)
from mmlnb_dist.core.tracking.metric_name import UnknownMetricError, has_metric, require_metric
from mmlnb_dist.core.tracking.ownership import ExportOwnerError, check_export_owner
from mmlnb_dist.core.tracking.versions import (ARTIFACTS_TAG, EXPORT_TAG, artifacts_digest, check_export_unchanged,
                                               registered_before)

METRIC = "best/val/acc"


def _input(context, manifest, name="shards", described=None):
    profile = {"manifest_sha256": manifest}
    if described:
        profile["provenance"] = {"describe": {"source_manifest_sha256": described}}
    return SimpleNamespace(tags=[SimpleNamespace(key="mlflow.data.context", value=context)],
                           dataset=SimpleNamespace(name=name, digest="d-" + manifest, profile=json.dumps(profile)))


def _run(run_id, metrics=None, params=None, inputs=(("val", "m1"),), tags=None):
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, run_name=run_id),
                           data=SimpleNamespace(metrics=dict(metrics or {}), params=dict(params or {}),
                                                tags=dict(tags or {})),
                           inputs=SimpleNamespace(dataset_inputs=[_input(*i) for i in inputs]))


class Registry:
    """The registry client `register_model` talks to: version "2" of this run's files is registered already (so
    nothing is logged), and the alias holder is `holder_run`'s version."""

    def __init__(self, runs, holder_run=None, holder_version="1"):
        self.runs = {r.info.run_id: r for r in runs}
        self.holder = SimpleNamespace(version=holder_version, run_id=holder_run.info.run_id) if holder_run else None
        self.moved_to, self.tracking_uri = None, None
        self.histories = {}  # (run id, metric) -> its values in step order

    def get_run(self, run_id):
        return self.runs[run_id]

    def get_metric_history(self, run_id, key):
        return [SimpleNamespace(key=key, value=v, step=s) for s, v in enumerate(self.histories.get((run_id, key), []))]

    def search_model_versions(self, query):
        return [SimpleNamespace(version="2", tags={ARTIFACTS_TAG: artifacts_digest({})})]

    def get_model_version_by_alias(self, name, alias):
        if self.holder is None:
            raise MlflowException("Registered model alias not found.", error_code=INVALID_PARAMETER_VALUE)
        return self.holder

    def set_registered_model_alias(self, name, alias, version):
        self.moved_to = version


@pytest.fixture
def register(tmp_path, monkeypatch):
    """`register(client, run_id, mode)`: `registry.register_model` of a run already registered as version 2."""
    import mlflow

    code = tmp_path / "model.py"
    code.write_text("")
    package = registry.ModelPackage(str(code), {}, None, None, metric_settings=["clip.top_k"])

    def run(client, run_id="n", mode="max", metric=METRIC):
        client.tracking_uri = f"sqlite:///{tmp_path / 'store.db'}"
        monkeypatch.setattr(mlflow, "MlflowClient", lambda *a, **k: client)
        result = registry.register_model(run_id, "model", lambda r: package, tracking_uri=client.tracking_uri,
                                         metric=metric, mode=mode)
        assert result.alias_moved == (client.moved_to == "2") and result.version == "2"
        return result
    return run


def _move(register, holder_value, new_value, mode="max", holder_inputs=(("val", "m1"),),
          new_inputs=(("val", "m1"),), holder_params=None, new_params=None):
    holder = _run("h", {} if holder_value is None else {METRIC: holder_value}, holder_params, holder_inputs)
    new = _run("n", {} if new_value is None else {METRIC: new_value}, new_params, new_inputs)
    result = register(Registry([holder, new], holder), mode=mode)
    return result.previous_value, result.alias_moved


@pytest.mark.parametrize("mode, holder, new, moves", [
    ("max", 0.7, 0.8, True), ("max", 0.8, 0.7, False), ("max", 0.75, 0.75, False),
    ("min", 0.5, 0.4, True), ("min", 0.4, 0.5, False), ("min", 0.4, 0.4, False),
    ("min", 0.3, float("nan"), False)])
def test_the_alias_moves_only_to_a_strictly_better_score(register, mode, holder, new, moves):
    """Higher wins under max, lower under min; a tie keeps the holder; a new version whose score is NaN never
    takes it."""
    previous, moved = _move(register, holder, new, mode)
    assert moved is moves and previous == holder


def test_a_holder_whose_run_is_deleted_gives_the_alias_up_and_the_reason_says_so(register):
    """The holder's run is gone for good: there is no score to keep it by, so the new version takes the alias, and
    the reason names the deleted run instead of "0.8 beats None"."""
    client = Registry([_run("n", {METRIC: 0.8})], _run("gone"))
    client.get_run = lambda run_id: client.runs[run_id] if run_id in client.runs else (_ for _ in ()).throw(
        MlflowException(f"Run '{run_id}' not found", error_code=RESOURCE_DOES_NOT_EXIST))
    result = register(client)
    assert result.alias_moved and result.previous_value is None
    assert "None" not in result.reason and "gone" in result.reason and "deleted" in result.reason


def test_a_holder_that_never_logged_the_metric_keeps_the_alias_and_the_reason_says_why(register):
    """A holder registered under another metric (or another recipe) has no score of this one: nothing is compared,
    so it keeps the alias (as a holder scored on unknown patches does), the reason naming its run and the metric,
    instead of "0.8 beats None" moving the alias on no comparison at all."""
    result = register(Registry([_run("h", {"best/val/f1": 0.9}), _run("n", {METRIC: 0.8})],
                               _run("h", {"best/val/f1": 0.9})))
    assert not result.alias_moved and result.previous_value is None
    assert "None" not in result.reason and "run h" in result.reason and f"never logged {METRIC}" in result.reason
    assert "set_registered_model_alias" in result.reason  # how to move it by hand


def test_a_run_without_the_selection_metric_is_refused_and_the_alias_stays(register):
    """A new run that never logged the metric is refused before anything moves."""
    client = Registry([_run("h", {METRIC: 0.1}), _run("n", {"val/loss": 1.0})], _run("h", {METRIC: 0.1}))
    with pytest.raises(UnknownMetricError):
        register(client)
    assert client.moved_to is None


def test_the_first_version_takes_the_alias_and_its_holder_keeps_it(register):
    """No holder yet: the new version gets the alias. Its holder registered again: nothing moves."""
    new = _run("n", {METRIC: 0.1})
    assert register(Registry([new]), "n").alias_moved is True
    held = Registry([new], new, holder_version="2")
    assert register(held, "n").alias_moved is False and held.moved_to is None


def test_scores_on_other_patches_or_other_metric_settings_never_move_the_alias(register):
    """A far better score on another validation set, or computed with another metric setting, is not compared."""
    assert _move(register, 0.1, 0.9, new_inputs=(("val", "m2"),))[1] is False
    assert _move(register, 0.1, 0.9, new_inputs=(("train", "m1"),))[1] is False  # no val set recorded
    assert _move(register, 0.1, 0.9, holder_params={"clip.top_k": "3"}, new_params={"clip.top_k": "5"})[1] is False
    assert _move(register, 0.1, 0.9, holder_params={"clip.top_k": "3"}, new_params={"clip.top_k": "3"})[1] is True


def test_comparability_is_decided_by_the_patches_not_the_set_name():
    """Same manifest under another name compares; another manifest under the same name does not; a described set
    counts as the set its descriptions were written for; a metric of no split needs no input."""
    holder = _run("h", inputs=(("val", "m1", "a"),))
    assert not_comparable(holder, "1", _run("n", inputs=(("val", "m1", "b"),)), METRIC) is None
    assert not_comparable(holder, "1", _run("n", inputs=(("val", "m2", "a"),)), METRIC)
    described = _run("n", inputs=(("val", "m-described", "a", "m1"),))
    assert not_comparable(holder, "1", described, METRIC) is None
    assert not_comparable(_run("h", inputs=()), "1", _run("n", inputs=()), "train_epoch/loss") is None
    assert not_comparable(_run("h", inputs=()), "1", _run("n"), METRIC)


@pytest.mark.parametrize("metric, split", [("best/val/acc", "val"), ("val/acc", "val"), ("test/f1", "test"),
                                           ("train_epoch/loss", None), ("acc", None)])
def test_metric_split(metric, split):
    """The split a metric was scored on is the part before its name."""
    assert metric_split(metric) == split


def test_best_metric_falls_back_to_the_plain_value():
    """`best/val/x` reads the run's `val/x` when it logged no `best/` value (a run from before export)."""
    run = _run("r", {"val/acc": 0.6, "best/val/f1": 0.5, "val/f1": 0.4})
    assert registry.run_metric(run, "best/val/acc") == 0.6 and registry.run_metric(run, "best/val/f1") == 0.5
    assert registry.run_metric(run, "val/loss") is None
    assert has_metric(run.data.metrics, "best/val/acc") and not has_metric(run.data.metrics, "val/loss")


@pytest.mark.parametrize("mode, history, holder, moves", [
    ("max", [0.9, 0.5], 0.8, True), ("max", [0.5, 0.7], 0.8, False), ("min", [0.2, 0.6], 0.3, True)])
def test_a_run_without_best_metrics_is_judged_on_its_best_value_not_its_last(register, mode, history, holder, moves):
    """`best/val/x` falls back to the best `val/x` the run logged in the metric's direction: the model registered
    is the best checkpoint's, not the last epoch's (the last value decided the alias on another model's score)."""
    plain = METRIC[len("best/"):]
    new = _run("n", {plain: history[-1]})
    client = Registry([_run("h", {METRIC: holder}), new], _run("h", {METRIC: holder}))
    client.histories[("n", plain)] = history
    result = register(client, mode=mode)
    assert result.alias_moved is moves
    assert result.value == (max(history) if mode == "max" else min(history))


def test_a_mistyped_selection_metric_is_refused_with_the_closest_name():
    """An unknown metric is refused naming what was probably meant; a known one (or its best/ form) passes."""
    metrics = {"val/balanced_accuracy": 0.5, "train_epoch/loss": 1.0}
    require_metric(metrics, "best/val/balanced_accuracy", "r1")
    with pytest.raises(UnknownMetricError, match="did you mean best/val/balanced_accuracy"):
        require_metric(metrics, "best/val/balanced_acc", "r1")


def test_the_alias_direction_follows_the_metric_name_unless_the_mode_is_given():
    """A loss (the metric's last part) is minimised, anything else maximised; `tracking.register_mode` wins."""
    assert registry.metric_mode("best/val/loss", {"loss"}) == "min"
    assert registry.metric_mode("best/val/acc", {"loss"}) == "max"
    assert registry.metric_mode("best/val/acc", {"val/acc"}) == "max"
    assert registry.alias_selection(TrackingConfig(), "loss", {"loss"}) == ("best/val/loss", "min")
    chosen = TrackingConfig(register_metric="val/acc", register_mode="min")
    assert registry.alias_selection(chosen, "loss", {"loss"}) == ("val/acc", "min")


def test_registering_needs_the_mlflow_backend():
    """`tracking.register_name` without mlflow in the backends is refused before training."""
    registry.check_registration(TrackingConfig(register_name=None, backends=["stdout"]))
    with pytest.raises(UserError):
        registry.check_registration(TrackingConfig(register_name="m", backends=["stdout"]))


def test_a_card_of_exactly_the_limit_is_kept_whole():
    """The registry keeps `limit` characters: a card that long is whole; one longer is cut on a line."""
    text = ("x" * 9 + "\n") * 10
    assert card.version_description(text, limit=100) == text
    cut = card.version_description(text + "y\n", limit=100)
    assert len(cut) <= 100 and cut.endswith(card.CARD_CUT)


def test_a_version_is_given_back_only_for_the_same_run_and_files(tmp_path):
    """A second registration of the same run and files gets its first version back; other files are new."""
    class Versions:
        def search_model_versions(self, query):
            assert "run_id='r1'" in query
            return [SimpleNamespace(version=v, tags={ARTIFACTS_TAG: d}) for v, d in (("3", "a"), ("5", "b"),
                                                                                     ("2", "b"))]
    assert registered_before(Versions(), "m", "r1", "b") == "2"
    assert registered_before(Versions(), "m", "r1", "c") is None


def test_the_artifacts_digest_changes_with_any_file_content_or_name(tmp_path):
    """The digest identifies the files: another byte, or the same bytes under another name, is another model."""
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "w.safetensors").write_bytes(b"1")
    base = artifacts_digest({"export": str(tmp_path / "e")})
    assert artifacts_digest({"export": str(tmp_path / "e")}) == base
    (tmp_path / "e" / "w.safetensors").write_bytes(b"2")
    changed = artifacts_digest({"export": str(tmp_path / "e")})
    (tmp_path / "e" / "w.safetensors").rename(tmp_path / "e" / "v.safetensors")
    assert len({base, changed, artifacts_digest({"export": str(tmp_path / "e")})}) == 3


def test_an_export_changed_since_training_is_refused(tmp_path):
    """Files differing from the digest the run recorded at export are refused, naming the file."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "w.safetensors").write_bytes(b"1")
    run = _run("r", tags={EXPORT_TAG: artifacts_digest({"export": str(export)})})
    check_export_unchanged(run, export, None)
    check_export_unchanged(_run("old"), export, None)  # exported before digests were recorded
    (export / "w.safetensors").write_bytes(b"2")
    with pytest.raises(UserError, match="changed since the run exported it"):
        check_export_unchanged(run, export, None)


def test_another_runs_export_is_refused_and_a_copy_of_its_own_accepted(tmp_path):
    """`--export` must be the run's own model: a byte-identical copy passes, other weights are refused."""
    own = tmp_path / "run" / "export"
    own.mkdir(parents=True)
    (own / "w.safetensors").write_bytes(b"1")
    copy = tmp_path / "copy" / "export"
    copy.mkdir(parents=True)
    (copy / "w.safetensors").write_bytes(b"1")
    check_export_owner("r1", tmp_path / "run", copy)
    (copy / "w.safetensors").write_bytes(b"2")
    with pytest.raises(ExportOwnerError):
        check_export_owner("r1", tmp_path / "run", copy)


def test_a_resume_on_rebuilt_shards_is_refused_and_on_moved_ones_allowed(tmp_path):
    """Same manifest digest at another path resumes; another digest for a split refuses the resume."""
    record_datasets(tmp_path, "train", [{"context": "val", "source": "/a", "profile": {"manifest_sha256": "m1"}}])
    check_resumed_datasets(tmp_path, "train", [{"context": "val", "source": "/b",
                                                "profile": {"manifest_sha256": "m1"}}])
    with pytest.raises(DataChangedError):
        check_resumed_datasets(tmp_path, "train", [{"context": "val", "source": "/a",
                                                    "profile": {"manifest_sha256": "m2"}}])

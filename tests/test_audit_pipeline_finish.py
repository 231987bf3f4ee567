"""Mutation-audit guards of the pipeline's last two stages (`mmlnb_dist.pipeline.finish`): evaluate (patch level and
slide level against a numpy / scikit-learn reference, each rank its own share of the shards exactly once, the
run's own numbers beside them, rank 0 alone writing) and register (the alias's metric and direction, a stage kept
open while there is no MLflow run to register, the recorded store checked, the alias's holder recorded)."""
from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
import torch

from mmlnb_dist.config import load_config
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.pipeline import finish
from mmlnb_dist.pipeline.stages import KEEP_OPEN, StageResult

CLASSES = ["UD", "PD", "D"]


# --- evaluate --------------------------------------------------------------------------------------------------

def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    """Twelve slides of five patches (labels mixed within a slide); each patch's description is the probabilities
    the stand-in predictor gives it, so the truth of every metric is known. Three samples per shard."""
    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig

    rng = np.random.default_rng(3)
    specs, truth, image = [], {}, _png()
    for s in range(12):
        for p in range(5):
            label = int(rng.integers(3)) if p < 2 else s % 3  # the slide's majority label: s % 3
            probs = rng.dirichlet([1.0, 1.0, 1.0])
            key = f"s{s:02d}p{p}"
            truth[key] = (f"slide{s:02d}", label, probs)
            specs.append(SampleSpec(key, CLASSES[label], image, slide_id=f"slide{s:02d}",
                                    description=" ".join(f"{x:.6f}" for x in probs)))
    root = tmp_path_factory.mktemp("eval") / "shards"
    build_shards(specs, root, BuildConfig(max_samples_per_shard=3, val_fraction=0.25, test_fraction=0.25,
                                          image_format="png", image_size=16, seed=0), CLASSES, progress=False)
    return root, truth


class _Predictor:
    """The fusion export's predictor: its probabilities are the ones each patch's description spells out."""

    classes = CLASSES
    transform = SimpleNamespace(image_size=16)
    def __init__(self):
        self.batches = []

    def predict(self, images, texts):
        self.batches.append(len(images))
        return {"probs": torch.tensor([[float(x) for x in t.split()] for t in texts])}


@pytest.fixture
def evaluate(monkeypatch):
    """`evaluate(shards, env)` -> (evaluation, [the rows each rank gathered])."""
    from mmlnb_dist.recipes.fusion import pyfunc_model

    predictor = _Predictor()
    monkeypatch.setattr(pyfunc_model, "load_predictor", lambda *a, **k: predictor)
    gathered = []

    def gather(env, obj):
        gathered.append(obj)
        return [obj]

    monkeypatch.setattr(finish, "all_gather_object", gather)

    def run(shards, env=DistEnv()):
        cfg = load_config("cpu-demo", ["train.eval_batch_size=2"])
        return finish.evaluate_fusion_export(cfg, Path("export"), shards, env), gathered
    run.batches = predictor.batches
    return run


def _split_keys(shards, split):
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet

    return [[s["__key__"] for s in iter_shard_samples(p)] for p, _ in ShardSet.open(shards).shards(split)]


def test_patch_and_slide_metrics_match_a_sklearn_reference(shard_set, evaluate):
    """Patch level: every test patch; slide level: the argmax of the slide's mean patch probabilities against its
    patches' majority label. The predictor is given at most `train.eval_batch_size` images at a time."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    shards, truth = shard_set
    evaluation, _ = evaluate(shards)
    for split in ("test", "val"):
        keys = [k for shard in _split_keys(shards, split) for k in shard]
        y = [truth[k][1] for k in keys]
        pred = [int(np.argmax(truth[k][2])) for k in keys]
        patch = evaluation["patch"][split]
        assert patch["num_samples"] == len(keys)
        assert patch["accuracy"] == pytest.approx(accuracy_score(y, pred))
        assert patch["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
        slides = sorted({truth[k][0] for k in keys})
        mean = {s: np.mean([truth[k][2] for k in keys if truth[k][0] == s], axis=0) for s in slides}
        label = {s: int(s[-2:]) % 3 for s in slides}
        rows = evaluation["slides"][split]
        assert [r["slide_id"] for r in rows] == slides
        for r in rows:
            assert [r[f"mean_prob_{c}"] for c in CLASSES] == pytest.approx(mean[r["slide_id"]].tolist(), abs=1e-5)
            assert r["label"] == CLASSES[label[r["slide_id"]]]
        s_pred = [int(np.argmax(mean[s])) for s in slides]
        assert evaluation["slide"][split]["accuracy"] == pytest.approx(accuracy_score([label[s] for s in slides],
                                                                                        s_pred))
    assert max(evaluate.batches) == 2  # (three samples per shard)


def test_each_rank_predicts_its_own_shards_and_all_of_them_once_between_the_ranks(shard_set, evaluate):
    """Two ranks: disjoint shares whose union is every held-out sample (a rank predicting every shard counts each
    sample twice in the gathered metrics)."""
    shards, _ = shard_set
    _, gathered = evaluate(shards, DistEnv(rank=0, world_size=2))
    _, gathered = evaluate(shards, DistEnv(rank=1, world_size=2))
    for i, split in enumerate(("test", "val")):
        rank0 = {r["key"] for r in gathered[i]}
        rank1 = {r["key"] for r in gathered[2 + i]}
        everything = {k for shard in _split_keys(shards, split) for k in shard}
        assert rank0 and rank1 and not rank0 & rank1 and rank0 | rank1 == everything


def test_a_split_with_no_samples_is_left_out(shard_set, evaluate, tmp_path):
    """A shard set whose manifest lists a split without samples: no row (and no crash) for it."""
    import shutil

    shards, _ = shard_set
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["test"]["num_samples"] = 0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    evaluation, _ = evaluate(copy)
    assert set(evaluation["patch"]) == {"val"} and set(evaluation["slide"]) == {"val"}


def test_slide_level_means_the_probabilities_and_takes_the_majority_label():
    """Patches without a slide are left out of the slide level; the rest: mean probabilities, majority label."""
    rows = [{"slide_id": "b", "label": 2, "probs": [0.2, 0.2, 0.6]},
            {"slide_id": "a", "label": 1, "probs": [0.5, 0.3, 0.2]},
            {"slide_id": "a", "label": 0, "probs": [0.1, 0.1, 0.8]},
            {"slide_id": "a", "label": 0, "probs": [0.3, 0.5, 0.2]},
            {"slide_id": None, "label": 1, "probs": [0.0, 1.0, 0.0]}]
    probs, targets, slides = finish.slide_level(rows, 3)
    assert slides == ["a", "b"]
    assert probs.flatten().tolist() == pytest.approx([0.3, 0.3, 0.4, 0.2, 0.2, 0.6])
    assert targets.tolist() == [0, 2]
    assert finish.slide_level(rows[-1:], 3) == (None, None, [])


def test_a_slide_whose_id_is_the_integer_0_is_a_slide():
    """A labels CSV read with integer slide ids stores 0 as a number: it is a slide (it was taken for "no slide"
    and left out of the slide level), an empty id is not."""
    rows = [{"slide_id": 0, "label": 1, "probs": [0.2, 0.8]}, {"slide_id": 1, "label": 0, "probs": [0.9, 0.1]},
            {"slide_id": "", "label": 0, "probs": [0.5, 0.5]}]
    probs, targets, slides = finish.slide_level(rows, 2)
    assert slides == ["0", "1"] and targets.tolist() == [1, 0]


def test_recipe_metrics_keeps_only_the_held_out_splits_numbers():
    """A recipe's result also holds train numbers, paths and bare keys: only test/ and val/ numbers are kept."""
    metrics = {"val/micro_f1": 0.5, "test/micro_f1": 0.25, "train/loss": 1.0, "test/": 3.0, "export_dir": "/x",
               "best_epoch": 2, "val/classes": ["a"], "test/num_samples": 10}
    assert finish.recipe_metrics(metrics) == {"patch": {"val": {"micro_f1": 0.5},
                                                        "test": {"micro_f1": 0.25, "num_samples": 10.0}},
                                              "slide": {}, "slides": {}}


def _train(tmp_path, metrics, fp="t1", **info):
    return StageResult("train", tmp_path / "run", fp, False, 1.0, {"metrics": metrics, "run_dir": str(tmp_path /
                                                                                                    "run"), **info})


def test_evaluate_without_an_export_reports_the_run_s_numbers_and_only_rank_0_writes(shard_set, tmp_path):
    """A fusion run without an export (none was made) falls back to its own numbers; the evaluation keeps the run's
    numbers beside (`recipe`); rank 1 writes nothing; the fingerprint follows the shard set."""
    shards_dir, _ = shard_set
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}"])
    train = _train(tmp_path, {"test/accuracy": 0.75, "val/accuracy": 0.5})
    shards = StageResult("shards", shards_dir, "s1", False, 1.0)
    other = finish.plan_evaluate(cfg, train, shards, DistEnv(rank=1, world_size=2))
    out = other.work(False)
    assert not Path(out["evaluation"]).exists()
    finish.plan_evaluate(cfg, train, shards, DistEnv()).work(False)
    evaluation = json.loads(Path(out["evaluation"]).read_text())
    assert evaluation["patch"] == evaluation["recipe"] == {"test": {"accuracy": 0.75}, "val": {"accuracy": 0.5}}
    from mmlnb_dist.data.shardset import ShardSet

    copies = ShardSet.open(shards_dir).copies_of_train()  # (every image is the same: all held-out are copies)
    assert evaluation["copies_of_train"] == copies and copies
    moved = StageResult("shards", shards_dir, "s2", False, 1.0)
    assert finish.plan_evaluate(cfg, train, moved).fingerprint != other.fingerprint


# --- register --------------------------------------------------------------------------------------------------

def _clip(tmp_path, *overrides):
    return load_config("clip-multilabel", [f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[mlflow]",
                                           f"tracking.uri=sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", *overrides])


@pytest.fixture
def hook(monkeypatch):
    """The recipe's register hook, recording its calls; it moves the alias when asked to (`hook.moves`)."""
    from mmlnb_dist.core.tracking.registry import RegisterResult

    calls = []

    def register(run_id, name, alias=None, tracking_uri=None, metric=None, mode=None, model_dir=None):
        calls.append(dict(run_id=run_id, name=name, alias=alias, metric=metric, mode=mode))
        return RegisterResult(name, "4", f"models:/{name}/4", alias, bool(alias), metric, 0.5, None, "better")

    monkeypatch.setattr(finish, "load_class", lambda path: register)
    return calls


def test_register_passes_the_alias_metric_and_its_direction_and_records_the_holder(tmp_path, monkeypatch, hook):
    """A lower-is-better register metric registers with mode `min` (a `max` would move the alias to worse
    models); the record says the alias is on the new version and the stage rechecks the store when skipped."""
    monkeypatch.setattr(finish, "_training_run", lambda train, uri: "run1")
    cfg = _clip(tmp_path, "tracking.register_metric=best/val/loss", "tracking.register_name=nb")
    stage = finish.plan_register(cfg, _train(tmp_path, {}))
    info = stage.work(False)
    assert hook == [dict(run_id="run1", name="nb", alias="champion", metric="best/val/loss", mode="min")]
    assert info["registered"] is True and info["alias_version"] == "4" and info["run_id"] == "run1"
    assert json.loads((finish.pipeline_dir(cfg) / "register" / "registered.json").read_text()) == info
    assert stage.recheck is not None and stage.recheck({"registered": False}) is None
    default = _clip(tmp_path)
    assert finish.plan_register(default, _train(tmp_path, {})).work(False)["name"] == default.run.name


def test_the_register_fingerprint_follows_the_alias_and_its_metric(tmp_path):
    """A rerun with another alias, metric or direction registers again (instead of skipping as up to date)."""
    base = finish.plan_register(_clip(tmp_path), _train(tmp_path, {})).fingerprint
    for override in ("tracking.register_alias=prod", "tracking.register_metric=best/val/macro_f1",
                     "tracking.register_mode=min"):
        assert finish.plan_register(_clip(tmp_path, override), _train(tmp_path, {})).fingerprint != base, override


def test_register_stays_open_while_there_is_no_mlflow_run_to_register(tmp_path, monkeypatch, hook):
    """Without mlflow in tracking.backends, or with the journal not sent: not registered, and kept open so that
    a rerun registers; a journal the server accepted registers its run."""
    from mmlnb_dist.core.tracking import folder_import

    imported = []
    monkeypatch.setattr(folder_import, "import_run_folder", lambda *a: imported.append(a) or {"run_id": "x"})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / folder_import.METRICS_FILE).write_text("")  # a run folder `tracking import` could import
    off = finish.plan_register(_clip(tmp_path, "tracking.backends=[stdout]"), _train(tmp_path, {})).work(False)
    assert off["registered"] is False and off[KEEP_OPEN] is True and hook == []
    assert imported == [] and "tracking.backends has no mlflow" in off["reason"]  # MLflow off: no MLflow run made
    monkeypatch.setattr(finish, "_training_run", lambda train, uri: None)
    monkeypatch.setattr(finish, "_send_training_journal", lambda run_dir, uri: (None, "connection refused"))
    down = finish.plan_register(_clip(tmp_path), _train(tmp_path, {})).work(False)
    assert down["registered"] is False and down[KEEP_OPEN] is True and "connection refused" in down["reason"]
    assert hook == []
    monkeypatch.setattr(finish, "_send_training_journal", lambda run_dir, uri: ("sent1", ""))
    sent = finish.plan_register(_clip(tmp_path), _train(tmp_path, {})).work(False)
    assert sent["registered"] is True and [c["run_id"] for c in hook] == ["sent1"]


def test_the_training_run_is_registered_from_the_store_it_was_logged_to_only(tmp_path):
    """Logged to another store: None (its journal goes to this one first); to this store: its run id, but only
    while the store's file exists (MLflow would make an empty one)."""
    from mmlnb_dist.core.tracking.journal import run_record_path

    run_dir = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train = _train(tmp_path, {}, mlflow_run_id="r1")
    assert finish._training_run(_train(tmp_path, {}), uri) is None  # no MLflow run at all
    record = run_record_path(run_dir, "train")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"run_id": "r1", "tracking_uri": f"sqlite:///{tmp_path / 'other.db'}"}))
    assert finish._training_run(train, uri) is None
    record.write_text(json.dumps({"run_id": "r1", "tracking_uri": uri}))
    with pytest.raises(UserError, match="does not exist"):
        finish._training_run(train, uri)
    (tmp_path / "mlflow.db").write_bytes(b"")
    assert finish._training_run(train, uri) == "r1"


def test_sending_the_journal_imports_a_run_folder_without_one_and_needs_a_run_id(tmp_path, monkeypatch):
    """No journal but kept metrics: the run is imported; a journal whose upload names no run is not a run."""
    from mmlnb_dist.core.tracking import folder_import, journal

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert finish._send_training_journal(run_dir, "sqlite:///x.db")[0] is None  # neither journal nor metrics
    (run_dir / folder_import.METRICS_FILE).write_text("")
    monkeypatch.setattr(folder_import, "import_run_folder", lambda *a: {"run_id": "imported", "sent": 3})
    assert finish._send_training_journal(run_dir, "sqlite:///x.db") == ("imported", "")
    spool = journal.Spool.for_stage(run_dir, "train").path
    spool.parent.mkdir(parents=True, exist_ok=True)
    spool.write_text("")
    monkeypatch.setattr(journal, "upload", lambda *a: {"run_id": None, "sent": 0})
    run_id, why = finish._send_training_journal(run_dir, "sqlite:///x.db")
    assert run_id is None and "names no run" in why


class _Store:
    """An MlflowClient: version 1 of "m" held by `holder_run`; the alias on `alias_on`; every run exists."""

    def __init__(self, holder_run="r1", alias_on="1"):
        self.holder_run, self.alias_on, self.asked = holder_run, alias_on, []

    def __call__(self, *a, **k):
        return self

    def get_model_version(self, name, version):
        self.asked.append("get_model_version")
        return SimpleNamespace(run_id=self.holder_run)

    def get_run(self, run_id):
        self.asked.append("get_run")
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id))

    def get_model_version_by_alias(self, name, alias):
        self.asked.append("get_model_version_by_alias")
        if self.alias_on is None:
            raise MlflowException("Registered model alias not found.", error_code=INVALID_PARAMETER_VALUE)
        return SimpleNamespace(version=self.alias_on, run_id="r0")


@pytest.fixture
def store(monkeypatch):
    import mlflow

    from mmlnb_dist.core.tracking import server

    monkeypatch.setattr(server, "server_reachable", lambda *a, **k: True)

    def use(**kwargs):
        client = _Store(**kwargs)
        monkeypatch.setattr(mlflow, "MlflowClient", client)
        return client
    return use


STATE = {"registered": True, "name": "m", "version": 1, "run_id": "r1", "model_uri": "models:/m/1"}


def test_a_skipped_registration_is_redone_only_when_its_version_is_another_run_s(store):
    """The version still holds the recorded run: the record stands. Held by another run: registered again (why
    says so). Not registered at all: the store is not asked."""
    uri = "http://127.0.0.1:9"
    assert finish.registration_lost(uri)(dict(STATE)) is None
    store(holder_run="r9")
    assert "another run's (r9)" in finish.registration_lost(uri)(dict(STATE))
    client = store()
    assert finish.registration_lost(uri)({"registered": False}) is None and client.asked == []


def test_the_recorded_alias_holder_is_the_version_the_alias_is_on_after_registering(store):
    """Moved: the new version, without asking the store. Not moved: the store's holder (none: None). No alias:
    None, without asking."""
    res = SimpleNamespace(name="m", version=3, alias="champion", alias_moved=True)
    client = store(alias_on="1")
    assert finish._alias_version("sqlite:///x.db", res) == "3" and client.asked == []
    assert finish._alias_version("sqlite:///x.db", SimpleNamespace(**{**vars(res), "alias_moved": False})) == "1"
    store(alias_on=None)
    assert finish._alias_version("sqlite:///x.db", SimpleNamespace(**{**vars(res), "alias_moved": False})) is None
    client = store(alias_on="1")
    assert finish._alias_version("sqlite:///x.db", SimpleNamespace(**{**vars(res), "alias": None,
                                                                        "alias_moved": False})) is None
    assert client.asked == []

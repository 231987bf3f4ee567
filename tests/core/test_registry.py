"""Model Registry: register a trained run as a pyfunc model, move the alias only on improvement, load it in a
fresh process and get the trainer's predictions; then `predict` on shards and broken inputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmlnb_dist.cli import main

from support.fusion import make_shards, tiny_config  # the fusion part's test helpers

ROOT = Path(__file__).resolve().parents[2]
METRIC = "best/val/balanced_accuracy"  # what the end-of-training hook and `mmlnb-dist register` select on


def register_run(run_id: str, name: str, alias: str, uri: str):
    """The fusion recipe's registry entry point with the selection metric of the old defaults."""
    from mmlnb_dist.recipes.fusion.pyfunc_model import register_run as register

    return register(run_id, name, alias=alias, tracking_uri=uri, metric=METRIC, mode="max")


@pytest.fixture(autouse=True)
def _process_uris_left_unset():
    """Tests here point MLflow's process-wide URIs at their store (models:/ URIs resolve through them); unset them
    after each test, so nothing run later in the session (a study, a search) tracks into this store."""
    import mlflow

    yield
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny fusion training run tracked in a local SQLite store."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    root = tmp_path_factory.mktemp("reg")
    shards = make_shards(root, n=90, size=48)
    cfg = tiny_config(shards, root / "runs", "reg", ["tracking.backends=[mlflow]", "train.epochs=2",
                                                      "train.log_every=1", "data.loader.image_size=32"])
    result = run(FusionRecipe, cfg)
    uri = f"sqlite:///{(root / 'runs' / 'mlflow.db').resolve()}"
    import mlflow

    client = mlflow.MlflowClient(uri, registry_uri=uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    run_id = client.search_runs([exp.experiment_id])[0].info.run_id
    return {"root": root, "shards": shards, "result": result, "uri": uri, "run_id": run_id, "cfg": cfg}


def _fake_run(client, trained, value: float, metric: str = "val/balanced_accuracy") -> str:
    """Another 'training run' of the same export with a chosen metric value (avoids a second training)."""
    src = client.get_run(trained["run_id"])
    run = client.create_run(src.info.experiment_id, tags={"run_dir": src.data.tags["run_dir"]})
    client.log_metric(run.info.run_id, metric, value)
    # scored on the trained run's shard sets: a run with no recorded validation set is never compared
    client.log_inputs(run.info.run_id, datasets=list(src.inputs.dataset_inputs))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _alias_after(trained, name: str, values, metric: str = METRIC, mode: str = "max"):
    """Register one fake run per value in turn; returns (alias_moved per version, the alias holder's version)."""
    import mlflow

    from mmlnb_dist.recipes.fusion.pyfunc_model import register_run as register

    client = mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])
    moved = [register(_fake_run(client, trained, v, metric.removeprefix("best/")), name, alias="champion",
                      tracking_uri=trained["uri"], metric=metric, mode=mode).alias_moved for v in values]
    return moved, str(client.get_model_version_by_alias(name, "champion").version)


def test_alias_is_compared_with_its_holder_not_with_the_latest_version(trained):
    """v1 good takes the alias, v2 worse does not, v3 beats v2 (the latest) but not v1 (the holder): no alias."""
    assert _alias_after(trained, "nb-holder", [0.8, 0.2, 0.5]) == ([True, False, False], "1")


def test_a_tie_leaves_the_alias_with_its_holder(trained):
    assert _alias_after(trained, "nb-tie", [0.6, 0.6]) == ([True, False], "1")


def test_mode_min_means_lower_is_better(trained):
    moved, holder = _alias_after(trained, "nb-min", [0.5, 0.7, 0.3, 0.4], metric="val/loss", mode="min")
    assert (moved, holder) == ([True, False, True, False], "3")


def test_alias_moves_only_when_the_metric_improves(trained):
    import mlflow

    uri, client = trained["uri"], mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])
    first = register_run(trained["run_id"], "nb-test", "champion", uri)
    assert first.alias_moved and first.version == "1"
    worse = register_run(_fake_run(client, trained, -1.0), "nb-test", "champion", uri)
    assert not worse.alias_moved
    assert str(client.get_model_version_by_alias("nb-test", "champion").version) == "1"
    better = register_run(_fake_run(client, trained, 2.0), "nb-test", "champion", uri)
    assert better.alias_moved
    assert str(client.get_model_version_by_alias("nb-test", "champion").version) == better.version
    mv = client.get_model_version("nb-test", better.version)
    assert "## Data" in mv.description and "## Metrics" in mv.description
    assert json.loads(mv.tags["classes"]) == ["UD", "PD", "D"]


def test_two_registrations_at_once_leave_the_alias_with_the_better_version(trained, monkeypatch):
    """Two jobs registering into one store at the same time (search trials, two pipelines) both read the alias
    holder before either moved it, and the slower one took the alias whatever its score: here the worse version
    ended as champion. The read-compare-move is one job's at a time now, so the second compares with the first."""
    import threading

    import mlflow

    import mmlnb_dist.core.tracking.registry as registry

    uri, client = trained["uri"], mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])
    runs = {"good": _fake_run(client, trained, 0.9), "bad": _fake_run(client, trained, 0.3)}
    for run_id in runs.values():  # versions first (alias-free): what races is only the alias
        register_run(run_id, "nb-race", None, uri)
    both_read, real = threading.Barrier(2, timeout=1.5), registry.alias_holder

    def slow_holder(*args):
        found = real(*args)
        try:  # (with the turn taken, the other job waits for it: the barrier times out and this one goes on)
            both_read.wait()
        except threading.BrokenBarrierError:
            pass
        if threading.current_thread().name == "bad":
            import time

            time.sleep(0.5)  # the worse one moves the alias last
        return found

    monkeypatch.setattr(registry, "alias_holder", slow_holder)
    results = {}
    jobs = [threading.Thread(name=tag, target=lambda t=tag: results.setdefault(
        t, register_run(runs[t], "nb-race", "champion", uri))) for tag in runs]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
    holder = client.get_model_version_by_alias("nb-race", "champion")
    assert holder.run_id == runs["good"], {t: r.reason for t, r in results.items()}
    assert sum(r.alias_moved for r in results.values()) in (1, 2) and len(results) == 2


def test_registering_the_same_run_twice_gives_back_its_version(trained):
    """A `register` run twice (a script rerun, a retry after a lost connection) made version 2 of the same weights
    from the same run; now the second call finds version 1 (same run, same export digest) and registers nothing."""
    import mlflow

    uri, client = trained["uri"], mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])
    first = register_run(trained["run_id"], "nb-twice", "champion", uri)
    again = register_run(trained["run_id"], "nb-twice", "champion", uri)
    assert (again.version, again.model_uri) == (first.version, first.model_uri) == ("1", "models:/nb-twice/1")
    assert again.reason.startswith(f"already, by an earlier registration of run {trained['run_id']}")
    assert not again.alias_moved
    assert [str(mv.version) for mv in client.search_model_versions("name='nb-twice'")] == ["1"]
    other_run = register_run(_fake_run(client, trained, 0.1), "nb-twice", "champion", uri)
    assert other_run.version == "2"  # another run (even of the same weights) is a version of its own


def test_training_logs_its_learning_rate_schedule(trained):
    """The fusion run's planned learning-rate curve is an MLflow figure beside the curriculum's, and the lr it
    trained with is a metric: constant here (the fusion default), 0 nowhere (frozen groups are not shown)."""
    import mlflow

    client = mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])
    figures = {a.path for a in client.list_artifacts(trained["run_id"], "figures")}
    assert {"figures/lr_schedule.png", "figures/curriculum_schedule.png"} <= figures
    lrs = [m.value for m in client.get_metric_history(trained["run_id"], "train/lr")]
    assert lrs and set(lrs) == {trained["cfg"].train.lr}


def test_register_command_and_missing_run(trained, capsys):
    code = main(["register", "--run", trained["run_id"], "--name", "nb-cli", "--alias", "champion",
                 "--uri", trained["uri"]])
    assert code == 0 and "models:/nb-cli@champion -> version 1" in capsys.readouterr().out
    assert main(["register", "--run", "0" * 32, "--name", "nb-cli", "--uri", trained["uri"]]) == 2
    assert "not found" in capsys.readouterr().err


def _inputs(trained, n=6):
    from mmlnb_dist.data.reader import iter_shard_samples

    tar = sorted(Path(trained["shards"]).glob("val-*.tar"))[0]
    samples = list(iter_shard_samples(tar))[:n]
    import base64

    images = [base64.b64encode(next(s[e] for e in ("png", "jpg") if e in s)).decode() for s in samples]
    texts = [s.get("txt", b"").decode() for s in samples]
    return pd.DataFrame({"image": images, "description": texts, "key": [s["__key__"] for s in samples],
                         "slide_id": [""] * len(samples)})


def assert_predicts_like_the_export(served, trained, frame) -> None:
    """`served` (a pyfunc model's predictions) equals the trainer's own model rebuilt from its export folder, and
    each row's `label` is the class whose `prob_<class>` is highest (the comparison above runs the same
    `predictions_frame` on both sides, so a label taken from a permuted class list would pass it)."""
    from mmlnb_dist.recipes.fusion.pyfunc_model import load_predictor, predictions_frame, read_image

    predictor = load_predictor(Path(trained["result"]["export_dir"]))
    local = predictions_frame(predictor, [read_image(v) for v in frame["image"]], list(frame["description"]),
                              list(frame["key"]), list(frame["slide_id"]))
    for c in ("prob_UD", "prob_PD", "prob_D", "alpha"):
        np.testing.assert_allclose(served[c].to_numpy(), local[c].to_numpy(), rtol=1e-5, atol=1e-6)
    assert list(served["label"]) == list(local["label"])
    classes = list(predictor.classes)
    most_probable = served[[f"prob_{c}" for c in classes]].to_numpy().argmax(axis=1)
    assert list(served["label"]) == [classes[i] for i in most_probable], served


@pytest.mark.slow
def test_fresh_process_loads_the_alias_and_predicts_like_the_trainer(trained, tmp_path):

    register_run(trained["run_id"], "nb-fresh", "champion", trained["uri"])
    frame = _inputs(trained)
    frame.to_json(tmp_path / "in.json", orient="records")
    code = (
        "import sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({trained['uri']!r})\n"
        "m = mlflow.pyfunc.load_model('models:/nb-fresh@champion')\n"
        f"df = pd.read_json({str(tmp_path / 'in.json')!r}, orient='records', dtype=False)\n"
        f"m.predict(df).to_json({str(tmp_path / 'out.json')!r}, orient='records')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=300)
    served = pd.read_json(tmp_path / "out.json", orient="records")
    assert_predicts_like_the_export(served, trained, frame)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG file whose header gives these dimensions (and almost no pixel data)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b""))


def test_predict_reports_bad_inputs_and_still_predicts_the_good_ones(trained, tmp_path, capsys):
    register_run(trained["run_id"], "nb-pred", "champion", trained["uri"])
    good = tmp_path / "good.png"
    import base64

    good.write_bytes(base64.b64decode(_inputs(trained, 1)["image"][0]))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    # a PNG whose header says 14000 x 14000 (a whole slide exported as one image): PIL refuses it as a possible
    # decompression bomb, an error that used to end the whole job with a traceback
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_only(14000, 14000))
    descs = tmp_path / "descs.csv"
    descs.write_text("path,description,slide_id\ngood.png,Sheets of small round blue cells.,S1\n")
    out = tmp_path / "preds.csv"
    code = main(["predict", "--model", "models:/nb-pred@champion", str(good), str(broken),
                 str(tmp_path / "missing.png"), str(huge), "--descriptions", str(descs), "--out", str(out),
                 "--uri", trained["uri"]])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.png: not a readable image" in err and "missing.png: no such file" in err
    assert "huge.png: too large to decode (196,000,000 pixels" in err and "slides tile" in err, err
    rows = pd.read_csv(out)
    assert list(rows["key"]) == ["good"] and rows["description"][0].startswith("Sheets")
    assert abs(rows[["prob_UD", "prob_PD", "prob_D"]].sum(axis=1)[0] - 1) < 1e-5


def test_predict_works_a_chunk_at_a_time_with_the_same_predictions(trained, tmp_path, monkeypatch):
    """predict decoded every input image, then sent them all to the model in one call: a slide set of 50k patches
    held every decoded image (and its base64 copy) at once, with no progress until the end. Now a chunk at a time,
    and the predictions are those of the one-call run."""
    import base64

    from mmlnb_dist import predict
    from mmlnb_dist.predict import run as predict_run

    register_run(trained["run_id"], "nb-chunks", "champion", trained["uri"])
    frame = _inputs(trained, 5)
    rows = ["path,description,slide_id"]
    for i, (b64, text) in enumerate(zip(frame["image"], frame["description"])):
        (tmp_path / f"p{i}.png").write_bytes(base64.b64decode(b64))
        rows.append(f'p{i}.png,"{text}",S{i % 2}')
    (tmp_path / "descs.csv").write_text("\n".join(rows) + "\n")
    sizes = []
    load = predict_run.load_model

    def spying_load(*args, **kwargs):
        model = load(*args, **kwargs)
        real = model.predict

        def spied(data, params=None):
            sizes.append(len(data))
            return real(data, params=params)

        model.predict = spied
        return model

    monkeypatch.setattr(predict_run, "load_model", spying_load)

    def run(chunk, out):
        sizes.clear()
        predict.predict_to_file("models:/nb-chunks@champion", [tmp_path / f"p{i}.png" for i in range(5)], out,
                                descriptions=tmp_path / "descs.csv", tracking_uri=trained["uri"], chunk_size=chunk)
        return list(sizes)

    assert run(2, tmp_path / "chunked.csv") == [2, 2, 1]
    assert run(1000, tmp_path / "whole.csv") == [5]
    for name in ("{}.csv", "{}.slides.csv"):  # equal up to float rounding (a batch's size changes the sums' order)
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / name.format("chunked")),
                                      pd.read_csv(tmp_path / name.format("whole")), rtol=1e-5)


def test_predict_on_shards_holds_no_image_until_it_predicts_it(trained, tmp_path):
    """Shard inputs were read whole (every image's bytes) before the first prediction. Now their images are read
    shard by shard as they are predicted; a sample without an image is reported, not a crash."""
    from mmlnb_dist import predict
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.writer import write_tar_shard

    register_run(trained["run_id"], "nb-shards", "champion", trained["uri"])
    items, failed = predict.collect_inputs([Path(trained["shards"])], "val")
    assert items and not failed and all(it.get("data") is None for it in items)
    for chunk in (3, 1000):
        predict.predict_to_file("models:/nb-shards@champion", [Path(trained["shards"])], tmp_path / f"{chunk}.csv",
                                split="val", tracking_uri=trained["uri"], chunk_size=chunk)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "3.csv"), pd.read_csv(tmp_path / "1000.csv"), rtol=1e-5)
    assert len(pd.read_csv(tmp_path / "3.csv")) == len(items)

    sample = next(iter_shard_samples(sorted(Path(trained["shards"]).glob("val-*.tar"))[0]))
    imageless = {k: v for k, v in sample.items() if k not in ("png", "jpg")}
    write_tar_shard(tmp_path / "odd.tar", [{**imageless, "__key__": "no_image"}, {**sample, "__key__": "fine"}],
                    ["UD", "PD", "D"])
    report = predict.predict_to_file("models:/nb-shards@champion", [tmp_path / "odd.tar"], tmp_path / "odd.csv",
                                     tracking_uri=trained["uri"])
    assert report["predicted"] == 1 and report["failed"] == [(f"{tmp_path / 'odd.tar'}:no_image",
                                                              "no image in the shard sample")]


def test_a_failed_write_leaves_the_earlier_predictions_whole(trained, tmp_path, monkeypatch):
    """The predictions file was opened for writing (emptied) before its rows were written: a failure while writing
    lost the earlier file and left a half one."""
    import csv

    from mmlnb_dist import predict

    register_run(trained["run_id"], "nb-write", "champion", trained["uri"])
    out = tmp_path / "preds.csv"
    out.write_text("key,label\nearlier,UD\n")

    def disk_full(self, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", disk_full)
    with pytest.raises(OSError, match="No space left"):
        predict.predict_to_file("models:/nb-write@champion", [Path(trained["shards"])], out, split="val",
                                tracking_uri=trained["uri"])
    # no half file; the journal of the predictions stays for the rerun (tests/recipes/fusion/test_predict_resume.py)
    assert out.read_text() == "key,label\nearlier,UD\n" and sorted(p.name for p in tmp_path.iterdir()) == \
        ["preds.csv", "preds.csv.resume"]


def _same_name_in_two_folders(trained, root: Path) -> Path:
    """`root/in/S1/p1.png` and `root/in/S2/p1.png`: two slides' patches that share a file name."""
    import base64

    for slide, b64 in zip(("S1", "S2"), _inputs(trained, 2)["image"]):
        (root / "in" / slide).mkdir(parents=True)
        (root / "in" / slide / "p1.png").write_bytes(base64.b64decode(b64))
    return root / "in"


def test_predict_matches_descriptions_by_path_when_two_images_share_a_file_name(trained, tmp_path, capsys):
    """Each row of the descriptions file names its image by path (relative to the file, or a tail of the path
    the image was given by). The lookup fell back to the bare file name, which the last row had claimed: both
    `p1.png` were scored with the second slide's description, silently."""
    register_run(trained["run_id"], "nb-paths", "champion", trained["uri"])
    images = _same_name_in_two_folders(trained, tmp_path)
    descs = tmp_path / "descs.csv"
    descs.write_text("image,caption\nin/S1/p1.png,Sheets of small round blue cells.\n"
                     "S2/p1.png,Ganglion cells in a schwannian stroma.\n")
    out = tmp_path / "preds.csv"
    code = main(["predict", "--model", "models:/nb-paths@champion", str(images), "--descriptions", str(descs),
                 "--description-column", "caption", "--out", str(out), "--uri", trained["uri"]])
    assert code == 0, capsys.readouterr().err
    got = dict(zip(pd.read_csv(out)["source"], pd.read_csv(out)["description"]))
    assert got == {str(images / "S1" / "p1.png"): "Sheets of small round blue cells.",
                   str(images / "S2" / "p1.png"): "Ganglion cells in a schwannian stroma."}


@pytest.mark.parametrize("rows", ["p1.png,Sheets of small round blue cells.\n",
                                  "p1.png,Sheets of small round blue cells.\np1.png,Ganglion cells.\n"])
def test_predict_refuses_a_file_name_that_could_be_either_image(trained, tmp_path, capsys, rows, monkeypatch):
    """A row that names only `p1.png` fits both slides' `p1.png` (and two such rows contradict each other):
    refused with the name and the remedy, nothing predicted, and before the model loads (a registered VLM-sized
    model takes minutes to load; the table's mistake is known without it)."""
    import mmlnb_dist.predict.run as predict_run

    def no_model(*_a, **_k):
        raise AssertionError("the model was loaded before the descriptions were matched to the images")

    monkeypatch.setattr(predict_run, "load_model", no_model)
    register_run(trained["run_id"], "nb-ambiguous", "champion", trained["uri"])
    images = _same_name_in_two_folders(trained, tmp_path)
    descs = tmp_path / "descs.csv"
    descs.write_text("path,description\n" + rows)
    out = tmp_path / "preds.csv"
    code = main(["predict", "--model", "models:/nb-ambiguous@champion", str(images), "--descriptions", str(descs),
                 "--out", str(out), "--uri", trained["uri"]])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists(), err
    assert "'p1.png'" in err and "path" in err, err


def test_predict_names_the_columns_of_a_descriptions_file_without_the_description_column(trained, tmp_path,
                                                                                        capsys):
    descs = tmp_path / "descs.csv"
    descs.write_text("image,caption\np1.png,Sheets of small round blue cells.\n")
    code = main(["predict", "--model", "models:/nb-nothing@champion", str(tmp_path), "--descriptions", str(descs),
                 "--out", str(tmp_path / "preds.csv"), "--uri", trained["uri"]])
    err = capsys.readouterr().err
    assert code == 2 and "no 'description' column" in err and "image, caption" in err, err
    assert "--description-column" in err, err


def test_predict_refuses_images_without_the_descriptions_the_model_reads(trained, tmp_path, capsys):
    """The fusion model reads a description with each image. Images given without one (no --descriptions, no
    --vlm, shards before `describe`) were scored on empty text and written out as predictions."""
    import base64

    register_run(trained["run_id"], "nb-text", "champion", trained["uri"])
    image = tmp_path / "patch.png"
    image.write_bytes(base64.b64decode(_inputs(trained, 1)["image"][0]))
    out = tmp_path / "preds.csv"
    code = main(["predict", "--model", "models:/nb-text@champion", str(image), "--out", str(out),
                 "--uri", trained["uri"]])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "reads a description with each image" in err and "1 of 1" in err and "patch.png" in err, err
    assert "--descriptions" in err and "--vlm" in err, err


def test_predict_on_shards_writes_per_slide_aggregates(trained, tmp_path):
    register_run(trained["run_id"], "nb-slides", "champion", trained["uri"])
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", "models:/nb-slides@champion", str(trained["shards"]), "--split", "val",
                 "--out", str(out), "--uri", trained["uri"]]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    slides = [json.loads(x) for x in out.with_name("preds.slides.jsonl").read_text().splitlines()]
    assert rows and all(r["slide_id"] for r in rows)
    # hand computation of one slide
    s = slides[0]
    mine = [r for r in rows if r["slide_id"] == s["slide_id"]]
    assert s["n_patches"] == len(mine)
    for c in ("UD", "PD", "D"):
        assert abs(s[f"mean_prob_{c}"] - sum(r[f"prob_{c}"] for r in mine) / len(mine)) < 1e-9
        assert s[f"votes_{c}"] == sum(r["label"] == c for r in mine)


def _one_patch(folder: Path) -> Path:
    """A folder with one readable patch: `predict` reads its inputs before it loads the model."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(folder / "patch.png")
    return folder


def test_missing_model_is_exit_code_2(tmp_path, capsys, trained):
    code = main(["predict", "--model", "models:/no-such-model@champion", str(_one_patch(tmp_path)), "--out",
                 str(tmp_path / "p.csv"), "--uri", trained["uri"]])
    assert code == 2 and "model not found" in capsys.readouterr().err


def test_slide_aggregates_by_hand():
    from mmlnb_dist.predict import slide_aggregates

    rows = [{"slide_id": "A", "label": "UD", "prob_UD": 0.6, "prob_PD": 0.3, "prob_D": 0.1},
            {"slide_id": "A", "label": "UD", "prob_UD": 0.5, "prob_PD": 0.4, "prob_D": 0.1},
            {"slide_id": "A", "label": "D", "prob_UD": 0.1, "prob_PD": 0.1, "prob_D": 0.8},
            {"slide_id": "B", "label": "PD", "prob_UD": 0.2, "prob_PD": 0.7, "prob_D": 0.1},
            {"slide_id": None, "label": "PD", "prob_UD": 0.2, "prob_PD": 0.7, "prob_D": 0.1}]
    a, b = slide_aggregates(rows, ["UD", "PD", "D"])
    assert a["n_patches"] == 3 and a["label_majority"] == "UD"
    assert a["mean_prob_UD"] == pytest.approx(0.4) and a["mean_prob_D"] == pytest.approx(1.0 / 3)
    assert a["label_mean_prob"] == "UD" and b["label_majority"] == "PD" and b["n_patches"] == 1


def _model_folder(trained, name: str, dest: Path) -> Path:
    import mlflow

    res = register_run(trained["run_id"], name, "champion", trained["uri"])
    mlflow.set_tracking_uri(trained["uri"])  # models:/ URIs resolve through the registry at this URI
    mlflow.set_registry_uri(trained["uri"])
    return Path(mlflow.artifacts.download_artifacts(res.model_uri, dst_path=str(dest),
                                                    tracking_uri=trained["uri"]))


def test_registered_model_is_code_not_a_pickle_and_predicts_like_the_export(trained, tmp_path):
    import mlflow
    import yaml


    folder = _model_folder(trained, "nb-code", tmp_path / "model")
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".pkl", ".pickle")) or "cloudpickle" in f], files
    pyfunc = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    assert pyfunc.get("model_code_path") and "python_model" not in pyfunc
    # a fresh serving environment installs what the encoder registries import, pinned to this environment
    from importlib import metadata

    reqs = (folder / "requirements.txt").read_text().split()
    for dist in ("torch", "timm", "open_clip_torch"):
        assert f"{dist}=={metadata.version(dist)}" in reqs, (dist, reqs)
    frame = _inputs(trained)
    served = mlflow.pyfunc.load_model(str(folder)).predict(frame)
    assert_predicts_like_the_export(served, trained, frame)


def test_served_model_refuses_rows_without_the_description_it_reads(trained, tmp_path):
    """The loaded (or `mlflow models serve`d) model scored a row without a description on empty text and answered
    with a prediction. The fusion model reads one with every image: the request is refused as an invalid parameter
    (HTTP 400 when served, with this message), naming how many rows and the first one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(str(_model_folder(trained, "nb-served", tmp_path / "model")))
    frame = _inputs(trained, 3)
    assert len(model.predict(frame)) == 3
    frame.loc[1, "description"] = ""
    with pytest.raises(MlflowException) as err:
        model.predict(frame)
    assert err.value.get_http_status_code() == 400
    assert "1 of 3" in err.value.message and f"key {frame['key'][1]}" in err.value.message, err.value.message
    frame.loc[:, "description"] = "   "
    with pytest.raises(MlflowException, match="3 of 3"):
        model.predict(frame)


def test_predict_refuses_a_model_folder_that_holds_a_pickle(trained, tmp_path, capsys):
    import base64

    folder = _model_folder(trained, "nb-unsafe", tmp_path / "model")
    (folder / "artifacts" / "export" / "extra_head.pt").write_bytes(b"\x80\x04K\x01.")  # a pickle of 1
    image = tmp_path / "p.png"
    image.write_bytes(base64.b64decode(_inputs(trained, 1)["image"][0]))
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(folder), str(image), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "extra_head.pt" in err and "unpickled" in err and not out.exists()


def test_predict_refuses_a_registered_pickled_pyfunc(trained, tmp_path, capsys):
    """A model logged the old way (a PythonModel object, pickled) is refused before anything is loaded."""
    import mlflow

    class Pickled(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    mlflow.set_tracking_uri(trained["uri"])
    mlflow.set_registry_uri(trained["uri"])
    # its own experiment and artifact folder: the store's Default experiment keeps its artifacts in ./mlruns, i.e.
    # in the checkout the tests run from
    exp = mlflow.MlflowClient(trained["uri"]).create_experiment(
        "pickled", artifact_location=(tmp_path / "artifacts").resolve().as_uri())
    with mlflow.start_run(experiment_id=exp):
        mlflow.pyfunc.log_model(name="model", python_model=Pickled(), registered_model_name="nb-pickled")
    code = main(["predict", "--model", "models:/nb-pickled/1", str(_one_patch(tmp_path / "in")), "--out",
                 str(tmp_path / "p.csv"), "--uri", trained["uri"]])
    assert code == 2 and "python_model.pkl" in capsys.readouterr().err


def test_registration_lands_in_the_given_store_whatever_the_process_registry_uri(trained, tmp_path, monkeypatch):
    """A process whose MLflow registry URI points elsewhere (left by `predict`, another job's store) must not
    receive the version: `register_model(tracking_uri=X)` registers in X (found by the CLIP recipe's tests)."""
    import mlflow

    from mlflow.tracking._model_registry import utils as registry_utils

    other = f"sqlite:///{(tmp_path / 'other.db').resolve()}"
    # what mlflow.set_registry_uri(other) does, undone by monkeypatch after the test (both places MLflow reads)
    monkeypatch.setattr(registry_utils, "_registry_uri", other)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", other)
    assert mlflow.get_registry_uri() == other
    client = mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])
    result = register_run(_fake_run(client, trained, 0.5), "nb-where", "champion", trained["uri"])
    assert client.get_model_version("nb-where", result.version).name == "nb-where"
    names = [m.name for m in mlflow.MlflowClient(other, registry_uri=other).search_registered_models()]
    assert "nb-where" not in names


def test_registering_leaves_the_process_tracking_uri_as_it_found_it(trained, monkeypatch):
    """A registration pointed MLflow at its store and then 'restored' the URI it read, which, when none was set,
    is MLflow's default `sqlite:///<cwd>/mlflow.db`: from then on MLFLOW_TRACKING_URI named that file, so a later
    run in the process (an ablation row, a search's register step, a test) tracked into the working directory."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    register_run(trained["run_id"], "nb-uri-kept", "champion", trained["uri"])
    assert "MLFLOW_TRACKING_URI" not in os.environ and not mlflow.is_tracking_uri_set()

"""`mmlnb-dist predict` with a registered CLIP model: per image the probability of every label (equal to the
export's own sigmoid(logits)), the predicted label set by top-k or threshold, captions from the shards or a
--descriptions file, and per-slide mean probabilities per label (no single-label majority vote)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmlnb_dist.cli import main

from support.clip import VOCAB
from support.clip_registry import AUTO_NAME, export_probabilities, raw_split, registered_run

MODEL = f"models:/{AUTO_NAME}@champion"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    yield from registered_run(tmp_path_factory.mktemp("clippred"))


def _probs(rows: pd.DataFrame) -> np.ndarray:
    return rows[[f"prob_{c}" for c in VOCAB]].to_numpy(dtype=np.float64)


def test_predict_over_a_shard_folder_equals_the_export_probabilities(trained, tmp_path):
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", MODEL, str(trained["shards"]), "--split", "val", "--out", str(out),
                 "--uri", trained["uri"]]) == 0
    rows = pd.read_csv(out, keep_default_na=False).sort_values("key").reset_index(drop=True)
    samples = raw_split(trained["shards"], "val")
    assert list(rows["key"]) == [s["key"] for s in samples]
    assert list(rows["description"]) == [s["text"] for s in samples]  # the shards' captions were used
    expected, _ = export_probabilities(trained["result"]["export_dir"], [s["png"] for s in samples],
                                       [s["text"] for s in samples])
    np.testing.assert_allclose(_probs(rows), expected, rtol=1e-5, atol=1e-6)
    # default selection: the model's top 3 (its clip.top_k), most probable first, with their probabilities
    for labels, label_probs, p in zip(rows["labels"], rows["label_probs"], expected):
        top = [VOCAB[i] for i in np.argsort(-p)[:3]]
        assert labels.split("|") == top
        assert [name for name, _ in json.loads(label_probs)] == top
    assert set(rows["selection"]) == {"top-3"}


def test_top_k_and_threshold_selections_checked_by_hand(trained, tmp_path):
    top2, thr = tmp_path / "top2.csv", tmp_path / "thr.jsonl"
    base = ["predict", "--model", MODEL, str(trained["shards"]), "--split", "val", "--uri", trained["uri"]]
    assert main(base + ["--out", str(top2), "--top-k", "2"]) == 0
    assert main(base + ["--out", str(thr), "--threshold", "0.5"]) == 0
    rows = pd.read_csv(top2, keep_default_na=False)
    for labels, p in zip(rows["labels"], _probs(rows)):
        first, second = sorted(range(len(VOCAB)), key=lambda i: -p[i])[:2]
        assert labels == f"{VOCAB[first]}|{VOCAB[second]}"
    records = [json.loads(line) for line in thr.read_text().splitlines()]
    assert {r["selection"] for r in records} == {"p>=0.5"}
    for r in records:
        chosen = [c for c in VOCAB if r[f"prob_{c}"] >= 0.5]
        chosen.sort(key=lambda c: -r[f"prob_{c}"])
        assert (r["labels"].split("|") if r["labels"] else []) == chosen


def test_images_with_a_descriptions_file_and_per_slide_mean_probabilities(trained, tmp_path):
    samples = raw_split(trained["shards"], "val")[:5]
    for s in samples:
        (tmp_path / f"{s['key']}.png").write_bytes(s["png"])
    captions = ["a necrosis fat patch", "tissue", "a mitoses patch", "fat", "a necrosis mitoses fat patch"]
    slides = ["A", "A", "B", "B", "B"]
    descs = tmp_path / "descs.csv"
    descs.write_text("path,description,slide_id\n" + "".join(
        f"{s['key']}.png,{c},{sl}\n" for s, c, sl in zip(samples, captions, slides)))
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", MODEL, *[str(tmp_path / f"{s['key']}.png") for s in samples],
                 "--descriptions", str(descs), "--out", str(out), "--uri", trained["uri"]]) == 0
    rows = pd.read_csv(out, keep_default_na=False)
    assert list(rows["description"]) == captions
    expected, _ = export_probabilities(trained["result"]["export_dir"], [s["png"] for s in samples], captions)
    np.testing.assert_allclose(_probs(rows), expected, rtol=1e-5, atol=1e-6)

    agg = pd.read_csv(out.with_name("preds.slides.csv"), keep_default_na=False)
    assert list(agg["slide_id"]) == ["A", "B"] and list(agg["n_patches"]) == [2, 3]
    assert not [c for c in agg.columns if c.startswith("votes_") or c == "label_majority"]
    for slide, idx in (("A", [0, 1]), ("B", [2, 3, 4])):
        got = agg[agg["slide_id"] == slide].iloc[0]
        mean = expected[idx].mean(axis=0)
        np.testing.assert_allclose([got[f"mean_prob_{c}"] for c in VOCAB], mean, rtol=1e-5, atol=1e-6)
        assert got["labels"].split("|") == [VOCAB[i] for i in np.argsort(-mean)[:3]]


def test_the_multilabel_csv_the_shards_were_built_from_gives_captions_and_slides(trained, tmp_path, capsys):
    """A user predicts new images with the CSV shape `shards build --task multilabel` reads (image, caption,
    labels, slide): the caption and slide columns are named on the command line; a named column the file lacks is
    refused with the file's columns."""
    samples = raw_split(trained["shards"], "val")[:4]
    (tmp_path / "imgs").mkdir()
    for s in samples:
        (tmp_path / "imgs" / f"{s['key']}.png").write_bytes(s["png"])
    captions, slides = ["a necrosis fat patch", "tissue", "a mitoses patch", "fat"], ["A", "A", "B", "B"]
    table = tmp_path / "patches.csv"
    table.write_text("image,caption,labels,slide\n" + "".join(
        f"imgs/{s['key']}.png,{c},fat,{sl}\n" for s, c, sl in zip(samples, captions, slides)))
    out = tmp_path / "preds.csv"
    args = ["predict", "--model", MODEL, str(tmp_path / "imgs"), "--descriptions", str(table),
            "--description-column", "caption", "--out", str(out), "--uri", trained["uri"]]
    assert main([*args, "--slide-column", "slide"]) == 0, capsys.readouterr().err
    rows = pd.read_csv(out, keep_default_na=False)
    assert dict(zip(rows["key"], rows["description"])) == {s["key"]: c for s, c in zip(samples, captions)}
    assert dict(zip(rows["key"], rows["slide_id"])) == {s["key"]: sl for s, sl in zip(samples, slides)}
    agg = pd.read_csv(out.with_name("preds.slides.csv"), keep_default_na=False)
    assert list(agg["slide_id"]) == ["A", "B"] and list(agg["n_patches"]) == [2, 2]

    assert main([*args, "--slide-column", "patient"]) == 2
    err = capsys.readouterr().err
    assert "no 'patient' column" in err and "image, caption, labels, slide" in err, err


def test_top_k_and_threshold_together_are_refused(trained, tmp_path, capsys):
    code = main(["predict", "--model", MODEL, str(trained["shards"]), "--out", str(tmp_path / "p.csv"),
                 "--top-k", "2", "--threshold", "0.5", "--uri", trained["uri"]])
    assert code != 0
    assert "--top-k" in capsys.readouterr().err


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluate_command_equals_the_runs_own_metrics(trained, split, capsys):
    """`mmlnb-dist evaluate --config clip-multilabel --export ...` prints the metrics the run wrote in its
    metrics.json for that split (the same best weights, the same split, the same top-k)."""
    from support.clip import CLIP_PROFILE

    from mmlnb_dist.recipes.clip.config import METRIC_NAMES

    result = trained["result"]
    capsys.readouterr()
    assert main(["evaluate", "--config", str(CLIP_PROFILE), "--export", result["export_dir"], "--split", split,
                 "--json", f"data.shards={trained['shards']}", "data.loader.num_workers=0",
                 "tracking.backends=[stdout]", f"run.output_dir={trained['root'] / 'eval'}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    own = json.loads((trained["root"] / "runs" / "reg" / "metrics.json").read_text())
    assert printed["num_samples"] == own[f"{split}/num_samples"] > 0
    for name in METRIC_NAMES:
        assert printed[name] == pytest.approx(own[f"{split}/{name}"], abs=1e-6), name
    assert printed["per_label_f1"] == pytest.approx(own[f"{split}/per_label_f1"], abs=1e-6)
    assert printed["labels_without_positives"] == own[f"{split}/labels_without_positives"]


def test_evaluate_without_a_config_uses_the_runs_own(trained, tmp_path, capsys, monkeypatch):
    """`evaluate --export runs/NAME/export` without --config evaluated with the embedded cpu-demo profile: another
    recipe (a CLIP export failed with 'unknown export format') and another shard set (`shards/demo` of wherever the
    command ran: a fusion run was silently scored on other data). The run's own saved config is used instead."""
    monkeypatch.chdir(tmp_path)
    export = trained["result"]["export_dir"]
    assert main(["evaluate", "--export", str(export), "--split", "test", "--json"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    own = json.loads((trained["root"] / "runs" / "reg" / "metrics.json").read_text())
    assert printed["num_samples"] == own["test/num_samples"] > 0
    assert printed["micro_f1"] == pytest.approx(own["test/micro_f1"], abs=1e-6)
    assert str(Path(export).parent / "config.yaml") in captured.err, captured.err


def test_the_export_records_the_loss_weights_of_the_run(trained):
    """`evaluate` with another config computes the run's loss from these (`clip.pos_weight`, null when unweighted)."""
    from mmlnb_dist.config import load_config

    meta = json.loads((Path(trained["result"]["export_dir"]) / "model_config.json").read_text())
    run_cfg = load_config(Path(trained["result"]["export_dir"]).parent / "config.yaml")
    assert "pos_weight" in meta and meta["pos_weight"] == run_cfg.clip.pos_weight


def test_evaluate_table_names_every_metric_and_label(trained, capsys):
    from support.clip import CLIP_PROFILE

    capsys.readouterr()
    assert main(["evaluate", "--config", str(CLIP_PROFILE), "--export", trained["result"]["export_dir"],
                 f"data.shards={trained['shards']}", "data.loader.num_workers=0", "tracking.backends=[stdout]",
                 f"run.output_dir={trained['root'] / 'eval'}"]) == 0
    table = capsys.readouterr().out
    assert "micro_auroc" in table and "at_least_1_of_top_k" in table and "balanced_accuracy" not in table
    assert all(label in table for label in VOCAB)


def test_predict_on_labelled_shards_keeps_the_label_sets_and_prints_the_agreement(trained, tmp_path, capsys):
    """Each row keeps its shard's label set (`true_labels`, `|`-joined in class order); the command prints micro
    F1 and exact match of the predicted sets against them (checked with scikit-learn)."""
    from sklearn.metrics import accuracy_score, f1_score

    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", MODEL, str(trained["shards"]), "--split", "val", "--out", str(out),
                 "--uri", trained["uri"]]) == 0
    printed = capsys.readouterr().out
    rows = pd.read_csv(out, keep_default_na=False)
    truth = {s["key"]: s["labels"] for s in raw_split(trained["shards"], "val")}
    assert {k: v.split("|") for k, v in zip(rows["key"], rows["true_labels"])} == truth

    def hot(column):
        return np.array([[name in value.split("|") for name in VOCAB] for value in column], dtype=int)

    f1 = f1_score(hot(rows["true_labels"]), hot(rows["labels"]), average="micro", zero_division=0)
    exact = accuracy_score(hot(rows["true_labels"]), hot(rows["labels"]))
    assert f"against the label sets of {len(rows)} patch(es): micro F1 {f1:.3f}, exact match {exact:.3f}" in printed, \
        printed


def test_an_export_holding_non_finite_weights_is_refused_at_load_naming_the_tensor(trained, tmp_path, capsys):
    """An export whose weights are NaN (a diverged run exported before the stop existed, or files altered since)
    used to score every image from NaN logits; it is refused when loaded, naming the file and the tensor."""
    import shutil

    from safetensors.torch import load_file, save_file

    export = tmp_path / "export"
    shutil.copytree(trained["result"]["export_dir"], export)
    weights = load_file(str(export / "model.safetensors"))
    name = sorted(k for k, v in weights.items() if v.is_floating_point())[-1]
    weights[name].view(-1)[0] = float("nan")
    save_file(weights, str(export / "model.safetensors"))
    capsys.readouterr()
    from support.clip import CLIP_PROFILE

    assert main(["evaluate", "--config", str(CLIP_PROFILE), "--export", str(export), "--split", "test",
                 f"data.shards={trained['shards']}", "data.loader.num_workers=0", "tracking.backends=[stdout]",
                 f"run.output_dir={tmp_path / 'eval'}"]) == 2
    err = capsys.readouterr().err
    assert f"{export / 'model.safetensors'} holds non-finite" in err and name in err, err

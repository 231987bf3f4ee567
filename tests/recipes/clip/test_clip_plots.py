"""Figures of a CLIP run: the per-label F1 bar chart (top-k prediction, val and test) and the training split's
label co-occurrence heatmap exist as PNG in the run folder and in MLflow, and the data behind them equals a
direct computation (scikit-learn on the export's probabilities; pair counts from the raw shards)."""
from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from support.clip import VOCAB
from support.clip_registry import export_probabilities, raw_split, registered_run

FIGURES = ("per_label_f1.png", "label_cooccurrence_train.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    yield from registered_run(tmp_path_factory.mktemp("clipplots"))


def test_figures_are_in_the_run_folder_and_in_mlflow(trained):
    import mlflow

    run_dir = trained["root"] / "runs" / "reg"
    for name in FIGURES:
        path = run_dir / "figures" / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert set(trained["result"]["figures"]) == set(FIGURES)
    logged = {a.path for a in mlflow.MlflowClient(trained["uri"]).list_artifacts(trained["run_id"], "figures")}
    assert {f"figures/{name}" for name in FIGURES} <= logged


@pytest.mark.parametrize("split", ["val", "test"])
def test_per_label_f1_chart_data_equals_scikit_learn_on_the_export(trained, split):
    from sklearn.metrics import f1_score

    from mmlnb_dist.recipes.clip.plots import per_label_f1_figure

    own = json.loads((trained["root"] / "runs" / "reg" / "metrics.json").read_text())
    samples = raw_split(trained["shards"], split)
    probs, classes = export_probabilities(trained["result"]["export_dir"], [s["png"] for s in samples],
                                          [s["text"] for s in samples])
    truth = np.array([[c in s["labels"] for c in classes] for s in samples], dtype=int)
    top3 = np.zeros_like(truth)
    np.put_along_axis(top3, np.argsort(-probs, axis=1)[:, :3], 1, axis=1)
    expected = f1_score(truth, top3, average=None, zero_division=0)
    fig, data = per_label_f1_figure({"val": own["val/per_label_f1"], "test": own["test/per_label_f1"]}, classes, 3)
    np.testing.assert_allclose(data[split], expected, atol=1e-6)
    # the bars drawn are those values: one bar per label and split, the split's bars in vocabulary order
    bars = fig.axes[0].patches
    offset = len(classes) * (0 if split == "val" else 1)
    np.testing.assert_allclose([b.get_width() for b in bars[offset:offset + len(classes)]], expected, atol=1e-6)


def test_cooccurrence_heatmap_data_equals_pair_counts_of_the_training_split(trained):
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.clip.plots import cooccurrence_figure, split_label_matrix

    train = raw_split(trained["shards"], "train")
    counts = np.zeros((len(VOCAB), len(VOCAB)), dtype=int)
    for s in train:
        idx = sorted(VOCAB.index(name) for name in set(s["labels"]))
        for i in idx:
            counts[i, i] += 1
        for i, j in combinations(idx, 2):
            counts[i, j] += 1
            counts[j, i] += 1
    matrix = split_label_matrix(ShardSet.open(trained["shards"]), "train")
    assert matrix.shape == (len(train), len(VOCAB))
    fig, data = cooccurrence_figure(matrix, VOCAB)
    np.testing.assert_array_equal(data["counts"], counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.nan_to_num(counts / np.diag(counts)[:, None])
    np.testing.assert_allclose(data["normalised"], expected)
    np.testing.assert_allclose(np.asarray(fig.axes[0].images[0].get_array()), expected)  # what the heatmap shows


def test_figures_are_saved_in_the_run_folder_without_mlflow(tmp_path):
    from mmlnb_dist.core.tracking.loggers import NullLogger
    from mmlnb_dist.recipes.clip.plots import cooccurrence_figure, per_label_f1_figure, save_figures

    multi_hot = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1]])
    counts_fig, data = cooccurrence_figure(multi_hot, ["a", "b", "c"])
    assert data["normalised"].tolist() == [[1, 0.5, 0.5], [1, 1, 0], [0.5, 0, 1]]
    figures = {"per_label_f1.png": per_label_f1_figure({"val": [0.5, 1.0, 0.0]}, ["a", "b", "c"], 1)[0],
               "label_cooccurrence_train.png": counts_fig}
    paths = save_figures(NullLogger(), tmp_path / "figures", figures)
    assert sorted(paths) == sorted(figures) and all((tmp_path / "figures" / n).is_file() for n in figures)

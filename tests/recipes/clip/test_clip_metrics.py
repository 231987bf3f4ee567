"""The CLIP recipe's multi-label metrics against scikit-learn (and numpy for j-of-k accuracy, which scikit-learn
lacks): one process, and gathered from 2 gloo ranks with uneven counts (every sample exactly once)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from support.ranks import run_ranks



def _data(n=57, labels=7, seed=0, empty=(5,)):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, labels)) < 0.3).astype(np.float32)
    targets[rng.integers(n, size=5), rng.integers(labels, size=5)] = 1.0
    targets[:, list(empty)] = 0.0  # a label with no positives in this split
    scores = rng.normal(size=(n, labels)).astype(np.float32) + 1.5 * targets  # informative, not perfect
    return scores, targets


def sklearn_reference(scores, targets, k):
    from sklearn.metrics import f1_score, hamming_loss, precision_score, recall_score, roc_auc_score

    top = np.argsort(-scores, axis=1)[:, :k]
    pred = np.zeros_like(targets, dtype=int)
    np.put_along_axis(pred, top, 1, axis=1)
    y = targets.astype(int)
    both = [c for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
    ref = {"micro_auroc": roc_auc_score(y, scores, average="micro"),
           "macro_auroc": roc_auc_score(y[:, both], scores[:, both], average="macro"),
           "hamming_loss": hamming_loss(y, pred)}
    for avg in ("micro", "macro"):
        ref[f"{avg}_f1"] = f1_score(y, pred, average=avg, zero_division=0)
        ref[f"{avg}_precision"] = precision_score(y, pred, average=avg, zero_division=0)
        ref[f"{avg}_recall"] = recall_score(y, pred, average=avg, zero_division=0)
    hits = np.take_along_axis(y, top, axis=1).sum(1)  # true labels among the top k
    for j in range(1, k + 1):
        ref[f"at_least_{j}_of_top_k"] = float((hits >= j).mean())
    return ref


@pytest.mark.parametrize("k", [1, 3])
def test_every_metric_equals_sklearn_on_random_scores(k):
    from mmlnb_dist.recipes.clip.metrics import multilabel_metrics

    scores, targets = _data()
    classes = [f"l{i}" for i in range(targets.shape[1])]
    got = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets), classes, k)
    ref = sklearn_reference(scores, targets, k)
    for name, value in ref.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
    assert got["labels_without_positives"] == ["l5"]  # listed, not silently dropped
    assert got["num_samples"] == len(scores)
    assert len(got["per_label_f1"]) == len(classes)
    from sklearn.metrics import f1_score

    top = np.argsort(-scores, axis=1)[:, :k]
    pred = np.zeros_like(targets, dtype=int)
    np.put_along_axis(pred, top, 1, axis=1)
    per_label = f1_score(targets.astype(int), pred, average=None, zero_division=0)
    for i, value in enumerate(got["per_label_f1"]):
        if i == 5:  # no positives: undefined, null in JSON (a 0.0 would read as a label the model always misses)
            assert value is None
        else:
            assert value == pytest.approx(per_label[i], abs=1e-6), classes[i]
    assert json.loads(json.dumps(got))["per_label_f1"][5] is None


def test_top_k_larger_than_the_vocabulary_is_refused():
    from mmlnb_dist.recipes.clip.metrics import multilabel_metrics

    scores, targets = _data(labels=3, empty=())
    with pytest.raises(ValueError, match="top_k"):
        multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets), ["a", "b", "c"], 4)


RANK = """
import json, sys
import numpy as np, torch
import torch.distributed as dist
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.recipes.clip.metrics import gathered_metrics

rank, data, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", rank=rank, world_size=2)
d = np.load(data)
cut = int(d["cut"])
part = slice(0, cut) if rank == 0 else slice(cut, None)
env = DistEnv(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
got = gathered_metrics(env, torch.from_numpy(d["scores"][part]), torch.from_numpy(d["targets"][part]),
                       [f"l{i}" for i in range(d["targets"].shape[1])], 3)
open(out, "w").write(json.dumps(got))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_metrics_gathered_from_two_ranks_with_uneven_counts_equal_sklearn_on_the_whole_split(tmp_path):
    scores, targets = _data(n=61)
    data = tmp_path / "split.npz"
    np.savez(data, scores=scores, targets=targets, cut=17)  # rank 0: 17 samples, rank 1: 44
    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    run_ranks(RANK, lambda r: (data, outs[r]))
    got = [json.loads(o.read_text()) for o in outs]
    assert got[0] == got[1]  # every rank gets the same answer
    assert got[0]["num_samples"] == 61  # every sample exactly once: no padding duplicates
    for name, value in sklearn_reference(scores, targets, 3).items():
        assert got[0][name] == pytest.approx(value, abs=1e-6), name


def test_non_finite_scores_are_an_error_naming_the_split_not_metrics_of_a_poor_model():
    """NaN scores used to give an AUROC near 0.5 and F1 like a weak model's (a run that diverged reported them)."""
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.recipes.clip.metrics import multilabel_metrics

    scores, targets = _data()
    scores[4, 2] = np.nan
    scores[9] = np.inf
    with pytest.raises(UserError, match=r"split 'test': 2 of 57 samples have non-finite .* first at row 4"):
        multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets), [f"l{i}" for i in range(7)], 3,
                           "test")

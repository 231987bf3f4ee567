"""Mutation audit of the fusion recipe's evaluation figures (`recipes.fusion.plots`): what each figure shows is
read back from the matplotlib objects and compared with numpy/sklearn, so a transposed confusion matrix (the
authors' defect), a column-normalised one, a ROC curve of the wrong class, swapped correct/wrong alpha panels or
mislabelled freezing phases fail here, not only a figure that cannot be drawn."""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.recipes.fusion.plots import (alpha_distribution_figure, confusion_matrix_figure, curriculum_figure,
                                             log_evaluation_figures, roc_curves_figure)

CLASSES = ["UD", "PD", "D"]
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 0, 2, 2, 0])  # confusions not symmetric: a transposed matrix differs


def _shown(fig) -> np.ndarray:
    return np.asarray(fig.axes[0].images[0].get_array())


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_confusion_matrix_rows_are_true_classes_and_normalised_per_row():
    want = np.zeros((3, 3))
    for t, p in zip(Y_TRUE, Y_PRED):
        want[t, p] += 1
    np.testing.assert_array_equal(_shown(confusion_matrix_figure(Y_TRUE, Y_PRED, CLASSES)), want)
    rates = _shown(confusion_matrix_figure(Y_TRUE, Y_PRED, CLASSES, normalize=True))
    np.testing.assert_allclose(rates, want / want.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(rates.sum(axis=1), 1.0)


@pytest.mark.filterwarnings("ignore:No artists with labels")
def test_roc_curves_are_per_class_one_vs_rest_and_skip_classes_without_negatives_or_positives():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 1])
    probs = rng.dirichlet([1, 1, 1], len(y))
    labels = _legend(roc_curves_figure(y, probs, CLASSES).axes[0])
    want = [f"{name} (AUC {roc_auc_score(y == c, probs[:, c]):.3f})" for c, name in enumerate(CLASSES)]
    assert labels == want
    # only class 1 present: every class is all-positive or all-negative, so no curve is drawn (AUC undefined)
    ax = roc_curves_figure(np.ones(4, int), rng.dirichlet([1, 1, 1], 4), CLASSES).axes[0]
    assert len(ax.get_lines()) == 1  # the chance diagonal alone


def test_alpha_panels_split_by_true_class_and_by_correct_vs_wrong():
    alpha = np.linspace(0.1, 0.9, len(Y_TRUE))
    fig = alpha_distribution_figure(alpha, Y_TRUE, Y_PRED, CLASSES)
    per_class, correctness = fig.axes[0], fig.axes[1]
    want_class = [f"{name} (n={(Y_TRUE == c).sum()}, mean {alpha[Y_TRUE == c].mean():.2f})"
                  for c, name in enumerate(CLASSES)]
    assert _legend(per_class) == want_class
    ok = Y_TRUE == Y_PRED
    assert _legend(correctness) == [f"correct (n={ok.sum()}, mean {alpha[ok].mean():.2f})",
                                    f"wrong (n={(~ok).sum()}, mean {alpha[~ok].mean():.2f})"]


def test_curriculum_figure_shades_each_phase_over_its_epochs_and_names_what_trains():
    phases = [{"start_epoch": 0, "train_image_encoder": True, "train_text_encoder": False},
              {"start_epoch": 3, "train_image_encoder": True, "train_text_encoder": True},
              {"start_epoch": 6, "train_image_encoder": False, "train_text_encoder": False}]
    epochs, lambdas = list(range(8)), [0.3, 0.3, 0.3, 0.5, 0.7, 0.9, 1.0, 1.0]
    ax = curriculum_figure(epochs, lambdas, phases).axes[0]
    spans = [tuple(np.round(p.get_path().transformed(p.get_patch_transform()).get_extents().intervalx, 6))
             for p in ax.patches]  # data-space x extent, whatever patch class axvspan returns
    assert spans == [(0, 3), (3, 6), (6, 8)]  # the last phase runs to the end of the last trained epoch
    assert [t.get_text() for t in ax.texts] == ["trains: image", "trains: image+text", "trains: heads only"]
    line = ax.get_lines()[0]
    # each epoch's lambda over that epoch: the line ends with the last epoch, at 8 (where the shading ends)
    assert list(line.get_xdata()) == [*epochs, 8] and list(line.get_ydata()) == [*lambdas, 1.0]


class _Collect:
    def __init__(self):
        self.figures = {}

    def log_figure(self, figure, name):
        self.figures[name] = figure


def test_log_evaluation_figures_draws_the_predicted_class_as_the_argmax_and_only_what_it_was_given():
    probs = np.eye(3)[Y_PRED] * 0.7 + 0.1
    logger = _Collect()
    log_evaluation_figures(logger, Y_TRUE, probs, CLASSES, prefix="test")
    assert set(logger.figures) == {"test/confusion_matrix.png", "test/confusion_matrix_normalized.png",
                                   "test/roc_curves.png"}  # no alpha (not PRMF), no curriculum given
    want = np.zeros((3, 3))
    np.add.at(want, (Y_TRUE, Y_PRED), 1)
    np.testing.assert_array_equal(_shown(logger.figures["test/confusion_matrix.png"]), want)
    cur = {"epochs": [0, 1], "lambdas": [0.3, 1.0]}
    log_evaluation_figures(logger, Y_TRUE, probs, CLASSES, alpha=np.full(len(Y_TRUE), 0.5), curriculum=cur)
    assert {"val/alpha_distribution.png", "curriculum_schedule.png"} <= set(logger.figures)


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix_of_a_class_never_seen_keeps_a_zero_row(normalize):
    shown = _shown(confusion_matrix_figure([0, 0, 2], [0, 2, 2], CLASSES, normalize=normalize))
    assert shown.shape == (3, 3) and not shown[1].any() and np.isfinite(shown).all()


def _spans(ax):
    return [tuple(np.round(p.get_path().transformed(p.get_patch_transform()).get_extents().intervalx, 6))
            for p in ax.patches]


def test_curriculum_figure_of_a_run_shorter_than_its_phase_table_shows_only_the_phases_it_trained():
    """A run stopped before its later phases (the cpu-demo phases at 0, 3, 6 with train.epochs=5, or the paper's
    phases at 0, 50, 100 on a short run): "Curriculum used" shades the phases it reached up to its last epoch,
    not a phase never entered, nor a span running backwards from that phase's start to the last epoch."""
    phases = [{"start_epoch": 0, "train_image_encoder": True, "train_text_encoder": False},
              {"start_epoch": 3, "train_image_encoder": True, "train_text_encoder": True},
              {"start_epoch": 6, "train_image_encoder": False, "train_text_encoder": False}]
    ax = curriculum_figure(list(range(5)), [0.3, 0.3, 0.3, 0.5, 0.7], phases).axes[0]
    assert _spans(ax) == [(0, 3), (3, 5)]
    assert [t.get_text() for t in ax.texts] == ["trains: image", "trains: image+text"]
    ax = curriculum_figure([0, 1], [0.3, 0.3], phases).axes[0]
    assert _spans(ax) == [(0, 2)] and [t.get_text() for t in ax.texts] == ["trains: image"]

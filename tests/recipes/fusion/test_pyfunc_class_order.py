"""The served fusion model's output frame names each probability by its class and predicts the most probable
class: `predictions_frame` turns the predictor's probabilities (columns in `predictor.classes` order) into
`label` and `prob_<class>`. The registry tests compare the served model with this same function, so a permuted
class order would pass them; here a stub predictor with known probabilities is the reference."""
from __future__ import annotations

import numpy as np
import pytest

CLASSES = ["UD", "PD", "D"]  # the export's order, not alphabetical


class StubPredictor:
    """Returns fixed probabilities (one row per image, columns in `classes` order) and an alpha per row."""

    def __init__(self, probs, alpha=None):
        self.classes = list(CLASSES)
        self.probs = np.asarray(probs, dtype=np.float64)
        self.alpha = alpha
        self.calls = 0

    def predict(self, images, texts):
        start = self.calls
        self.calls += len(images)
        alpha = None if self.alpha is None else np.asarray(self.alpha[start:self.calls])
        return {"probs": self.probs[start:self.calls], "alpha": alpha}


@pytest.mark.parametrize("batch_size", [1, 32])
def test_the_label_is_the_most_probable_class_and_each_prob_column_is_its_class(batch_size):
    """A user reading `label` or `prob_<class>` would otherwise get another class's answer: with the class list
    reversed when labelling, the second row (0.8 on UD) was labelled D (the middle class, PD, hides it)."""
    from mmlnb_dist.recipes.fusion.pyfunc_model import predictions_frame

    predictor = StubPredictor([[.1, .7, .2], [.8, .1, .1]], alpha=[.25, .75])
    frame = predictions_frame(predictor, ["img-a", "img-b"], ["text a", ""], ["a", "b"], ["s1", "s1"],
                              batch_size=batch_size)
    assert list(frame["label"]) == ["PD", "UD"]
    np.testing.assert_allclose(frame["prob_UD"], [.1, .8])
    np.testing.assert_allclose(frame["prob_PD"], [.7, .1])
    np.testing.assert_allclose(frame["prob_D"], [.2, .1])
    assert [c for c in frame.columns if c.startswith("prob_")] == ["prob_UD", "prob_PD", "prob_D"]
    assert list(frame["key"]) == ["a", "b"]  # the rows stay in input order, batch after batch
    np.testing.assert_allclose(frame["alpha"], [.25, .75])
    assert list(frame["description"]) == ["text a", ""]


def test_a_fusion_without_alpha_gets_nan_alpha_and_still_labels_by_class():
    """The image-only and concat fusions return no alpha: the column is NaN, the labels are unaffected."""
    from mmlnb_dist.recipes.fusion.pyfunc_model import predictions_frame

    frame = predictions_frame(StubPredictor([[.2, .2, .6], [.5, .3, .2]]), ["x", "y"], ["", ""], [None, None],
                              [None, None])
    assert list(frame["label"]) == ["D", "UD"]
    assert np.isnan(frame["alpha"]).all()

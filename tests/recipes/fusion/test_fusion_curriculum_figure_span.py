"""curriculum_schedule.png shades each phase over whole epochs (epoch e spans [e, e + 1), the last phase up to the
end of the last trained epoch), but the lambda line stopped at the last epoch's start: the last epoch's lambda
showed only as a marker, one epoch short of the shading. The line now holds each epoch's lambda over that epoch,
up to where the shading ends, with a marker at each trained epoch only."""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.recipes.fusion.plots import curriculum_figure

PHASES = [{"start_epoch": 0, "train_image_encoder": True, "train_text_encoder": False},
          {"start_epoch": 2, "train_image_encoder": False, "train_text_encoder": False}]


def _span(ax):
    """The data-space x extent covered by all the shaded phases together."""
    lows, highs = zip(*(p.get_path().transformed(p.get_patch_transform()).get_extents().intervalx
                        for p in ax.patches))
    return min(lows), max(highs)


def _value_at(line, x):
    """The lambda the step line (drawn `where="post"`) shows at `x`."""
    xs, ys = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    assert line.get_drawstyle() == "steps-post"
    return ys[np.searchsorted(xs, x, side="right") - 1]


@pytest.mark.parametrize("phases", [PHASES, None])
def test_the_lambda_line_covers_every_trained_epoch_as_far_as_the_shading(phases):
    epochs, lambdas = [0, 1, 2, 3], [0.3, 0.5, 0.8, 1.0]
    ax = curriculum_figure(epochs, lambdas, phases).axes[0]
    line = ax.get_lines()[0]
    xs = np.asarray(line.get_xdata(), float)
    assert (xs.min(), xs.max()) == (0, 4)  # epoch 3 runs from 3 to 4
    if phases:
        assert _span(ax) == pytest.approx((0, 4))
    for e, lam in zip(epochs, lambdas):  # each epoch's lambda held over the whole epoch, its end included
        assert [_value_at(line, x) for x in (e, e + 0.5, e + 0.999)] == [lam] * 3, e
    marked = xs[line.get_markevery()] if line.get_markevery() is not None else xs
    assert list(marked) == epochs  # a marker per trained epoch, none at the end of the last one


def test_a_single_epoch_run_draws_its_lambda_over_that_epoch():
    line = curriculum_figure([0], [0.3], PHASES).axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [0, 1] and list(line.get_ydata()) == [0.3, 0.3]


def test_a_run_without_epochs_draws_no_line():
    assert len(curriculum_figure([], [], PHASES).axes[0].get_lines()[0].get_xdata()) == 0

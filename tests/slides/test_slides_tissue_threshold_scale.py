"""`slides.tissue.threshold` is on the channel's scale: saturation 0-255, optical density 0 to ln(256) = 5.5. A
saturation threshold kept when switching to `channel=optical_density` (threshold=20) was accepted and found no
tissue on any slide, each reading `no tissue found` with no word of the threshold; one at or above 255 on the
saturation channel did the same. Both are now config errors naming the option, the channel and its range."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


@pytest.mark.parametrize("channel,refused,accepted", [("optical_density", "20", "0.3"), ("saturation", "255", "40")])
def test_a_threshold_no_pixel_can_pass_is_refused(channel, refused, accepted):
    with pytest.raises(ConfigError, match=r"slides\.tissue") as err:
        load_config(None, [f"slides.tissue.channel={channel}", f"slides.tissue.threshold={refused}"])
    assert "threshold" in str(err.value) and channel in str(err.value), str(err.value)
    cfg = load_config(None, [f"slides.tissue.channel={channel}", f"slides.tissue.threshold={accepted}"]).slides
    assert cfg.tissue.threshold == float(accepted)

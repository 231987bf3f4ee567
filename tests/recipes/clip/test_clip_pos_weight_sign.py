"""`clip.pos_weight` holds positive weights: a negative (or zero) weight turns BCE's reward for a label's positives
into a penalty (or drops them), so the run learns to miss that label, and the loss is unbounded below; it was
accepted without a word. Refused when the config is read, naming the key."""
from __future__ import annotations

import pytest

from support.clip import clip_config


@pytest.mark.parametrize("weights", ["[1,-1,1,1,1,1]", "[0,1,1,1,1,1]"])
def test_a_weight_that_is_not_positive_is_refused_naming_the_key(tmp_path, weights):
    from mmlnb_dist.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"clip\.pos_weight\.[01]: Input should be greater than 0"):
        clip_config(tmp_path / "shards", tmp_path / "runs", f"clip.pos_weight={weights}")
    cfg = clip_config(tmp_path / "shards", tmp_path / "runs", "clip.pos_weight=[1,2.5,1,1,1,0.5]")
    assert cfg.clip.pos_weight == [1.0, 2.5, 1.0, 1.0, 1.0, 0.5]

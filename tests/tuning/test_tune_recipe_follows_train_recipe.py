"""`mmlnb-dist tune --config clip-demo` searched the fusion recipe: `tune.recipe` defaulted to `fusion` whatever
the config trained, so a CLIP config's search ran fusion trials on its caption shards (refused by the fusion
recipe's checks with advice about another profile). Unset, `tune.recipe` now follows `train.recipe`, and an unset
`tune.metric` the run's own `train.best_metric`; a value the user sets is kept."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


def test_a_clip_config_searches_clip_on_its_own_best_metric():
    cfg = load_config("clip-demo", [])
    assert (cfg.train.recipe, cfg.tune.recipe, cfg.tune.metric) == ("clip", "clip", "val/micro_f1")
    again = load_config("clip-demo", ["train.best_metric=macro_f1"])
    assert again.tune.metric == "val/macro_f1"


def test_what_the_user_sets_is_kept():
    cfg = load_config("clip-demo", ["tune.metric=val/hamming_loss"])
    assert (cfg.tune.recipe, cfg.tune.metric) == ("clip", "val/hamming_loss")
    fusion = load_config("clip-demo", ["tune.recipe=fusion"])  # the search's own defaults then
    assert (fusion.tune.recipe, fusion.tune.metric) == ("fusion", "val/balanced_accuracy")
    with pytest.raises(ConfigError, match="tune.metric"):  # fusion trials report no val/micro_f1
        load_config("clip-demo", ["tune.recipe=fusion", "tune.metric=val/micro_f1"])


def test_a_fusion_config_is_unchanged():
    cfg = load_config("cpu-demo", [])
    assert (cfg.tune.recipe, cfg.tune.metric) == ("fusion", "val/balanced_accuracy")

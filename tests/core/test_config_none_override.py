"""`KEY=None`, as Python users write "unset", unsets an Optional setting as `KEY=null` does.

It was kept as the text 'None': `run.cache_dir=None` wrote the caches to a folder named None, and
`tracking.register_name=None` registered the model under the name None; a number's or choice's None was refused
as "got 'None'". A setting that is not Optional keeps the text (a run may be named None)."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import flatten


@pytest.mark.parametrize("key,value", [("run.cache_dir", "/tmp/cache"), ("tracking.register_name", "nb"),
                                       ("tune.address", "auto"), ("tune.mode", "max"),
                                       ("distributed.micro_batch_per_gpu", "8"),
                                       ("distributed.deepspeed_config", "ds.json")])
@pytest.mark.parametrize("none", ["None", " None "])
def test_none_unsets_an_optional_setting_as_null_does(key, value, none):
    with_null = flatten(load_config(None, [f"{key}={value}", f"{key}=null"]))
    with_none = flatten(load_config(None, [f"{key}={value}", f"{key}={none}"]))
    assert with_none[key] is None and with_none == with_null


def test_a_setting_that_is_not_optional_keeps_the_text_none():
    assert load_config(None, ["run.name=None"]).run.name == "None"

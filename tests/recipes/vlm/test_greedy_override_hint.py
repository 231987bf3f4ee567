"""Sampling settings under `preset: greedy` are refused with the overrides that drop them; those overrides, copied
as printed, must load (they were printed as `temperature=null`, itself refused as an unknown top-level key)."""
from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("given", [["vlm.generation.temperature=0.5"],
                                   ["vlm.generation.top_p=0.8", "vlm.generation.top_k=5"]])
def test_the_printed_overrides_drop_the_sampling_settings(given):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.errors import ConfigError

    base = ["vlm.generation.preset=authors", "vlm.generation.temperature=null", *given]
    with pytest.raises(ConfigError) as err:
        load_config("cpu-demo", [*base, "vlm.generation.preset=greedy"])
    printed = re.search(r"as overrides: ([^)]*)\)", str(err.value)).group(1).split()
    assert len(printed) == len(given), str(err.value)
    cfg = load_config("cpu-demo", [*base, "vlm.generation.preset=greedy", *printed])
    gen = cfg.vlm.generation
    assert gen.preset == "greedy" and gen.temperature is None and gen.top_p is None and gen.top_k is None

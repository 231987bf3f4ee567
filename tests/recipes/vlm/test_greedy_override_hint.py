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


def test_temperature_zero_is_refused_pointing_at_the_greedy_preset():
    """Temperature 0 is greedy decoding in vLLM / LLaMA-Factory terms; here greedy is a preset, so the refusal says
    which overrides ask for it (it said only "Input should be greater than 0")."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"vlm\.generation\.preset=greedy vlm\.generation\.temperature=null"):
        load_config("cpu-demo", ["vlm.generation.temperature=0"])
    with pytest.raises(ConfigError, match=r"greater than 0"):  # a negative one is no request for greedy
        load_config("cpu-demo", ["vlm.generation.temperature=-1"])

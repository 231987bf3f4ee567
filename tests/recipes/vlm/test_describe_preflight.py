"""Errors describe met only on its first batch (an adapter trained on another tiny base, an adapter holding NaN,
a prompt the processor cannot encode) came after the output folder had been claimed with the bad settings'
provenance.json, so the corrected rerun was refused ("describe.tiny_seed: 1 -> 0 ... --restart"). They are now
checked before the claim; any other failure before the first finished batch drops the claim it made."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import ConfigError, UserError

from support.vlm import DESCRIBE_PIXELS, describe_config, make_pairs, write_random_adapter

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("describe-preflight")
    make_pairs(tmp / "in", n=8, per_shard=4, val_fraction=0.25)
    # no run beside the adapter: nothing fixes the settings
    write_random_adapter(describe_config(tmp).vlm, tmp / "adapter", 1, DESCRIBE_PIXELS)
    return tmp


def test_an_adapter_of_another_tiny_base_is_refused_before_the_claim_and_the_rerun_goes_through(data):
    from mmlnb_dist.recipes.vlm.describe import run_describe

    out = data / "seed1"
    with pytest.raises(UserError, match=r"trained on the base model .*seed0"):
        run_describe(describe_config(data, "vlm.tiny_seed=1"), "tiny", str(data / "adapter"), data / "in", out,
                     progress=False)
    assert not (out / "provenance.json").exists()
    result = run_describe(describe_config(data), "tiny", str(data / "adapter"), data / "in", out, progress=False)
    assert result["num_samples"] == 8


@pytest.mark.parametrize("token", ["<|image_pad|>", "<|vision_start|>"])
def test_a_prompt_holding_a_vision_token_is_refused_naming_the_key_before_the_claim(data, token):
    from mmlnb_dist.recipes.vlm.describe import run_describe

    out = data / f"prompt-{token.strip('<|>')}"
    with pytest.raises(ConfigError, match=r"vlm.prompt") as err:
        run_describe(describe_config(data, f"vlm.prompt=Describe {token} this."), "tiny", str(data / "adapter"),
                     data / "in", out, progress=False)
    assert token in str(err.value)
    assert not (out / "provenance.json").exists()


def test_a_failure_before_any_finished_batch_drops_the_claim(data, monkeypatch):
    from mmlnb_dist.recipes.vlm import describe as D

    def broken(self, images):
        raise RuntimeError("simulated failure in the first batch")

    monkeypatch.setattr(D.Describer, "describe", broken)
    out = data / "broken"
    with pytest.raises(RuntimeError, match="simulated"):
        D.run_describe(describe_config(data), "tiny", str(data / "adapter"), data / "in", out, progress=False)
    assert not (out / "provenance.json").exists()

"""Mutation audit of the `vlm` section's lower bounds: a count that must be at least one (epochs, steps, batch
sizes, intervals, tokens), a rate that must be positive and a seed that must not be negative are refused at config
load, naming the field, and their smallest allowed value is accepted (`ge=1` -> `ge=0` on epochs or
generation.batch_size survived the existing tests)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmlnb_dist.recipes.vlm.config import GenerationConfig, LoraConfig, VLMConfig

AT_LEAST_ONE = ["epochs", "max_steps", "global_batch_size", "micro_batch_per_gpu", "log_every", "eval_every",
                "checkpoint_every", "val_max_samples"]
POSITIVE = ["lr", "merger_lr", "vision_lr"]


@pytest.mark.parametrize("key", AT_LEAST_ONE)
def test_a_count_below_one_is_refused_and_one_is_accepted(key):
    assert getattr(VLMConfig(**{key: 1}), key) == 1
    with pytest.raises(ValidationError, match=key):
        VLMConfig(**{key: 0})


@pytest.mark.parametrize("key", ["max_new_tokens", "batch_size"])
def test_generation_counts_below_one_are_refused(key):
    assert getattr(GenerationConfig(**{key: 1}), key) == 1
    with pytest.raises(ValidationError, match=key):
        GenerationConfig(**{key: 0})


@pytest.mark.parametrize("key", POSITIVE)
def test_a_learning_rate_must_be_positive(key):
    trained = LoraConfig(train_merger=True, vision_lora=True)  # (a part's rate needs its part trained)
    assert getattr(VLMConfig(**{key: 1e-9}, lora=trained), key) == 1e-9
    with pytest.raises(ValidationError, match=key):
        VLMConfig(**{key: 0.0}, lora=trained)


def test_the_tiny_seed_may_be_zero_but_not_negative_and_the_repetition_penalty_must_be_positive():
    assert VLMConfig(tiny_seed=0).tiny_seed == 0
    with pytest.raises(ValidationError, match="tiny_seed"):
        VLMConfig(tiny_seed=-1)
    with pytest.raises(ValidationError, match="repetition_penalty"):
        GenerationConfig(repetition_penalty=0.0)

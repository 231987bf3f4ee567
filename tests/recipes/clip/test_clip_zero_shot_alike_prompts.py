"""Zero-shot prompts the text tower cannot tell apart (defect hunt, clip4): two labels whose prompts are the same
tokens (cut at the token limit, or spelt alike to the tokenizer) got equal scores on every image, the top-k
choosing between them by position; now a ConfigError naming them. Distinct prompts, a label that is a prefix of
another among them, still build."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core.errors import ConfigError

KINDS = ["tiny", "tiny-open_clip"]


def _zero_shot(kind: str, classes, max_length: int = 16):
    from mmlnb_dist.recipes.clip.config import ClipModelConfig
    from mmlnb_dist.recipes.clip.model import build_model

    cfg = ClipModelConfig.model_validate({"towers": {"name": kind, "max_length": max_length, "tiny": {"layers": 1}},
                                          "fusion": "zero_shot", "zero_shot_prompt": "A pathology image of {label}"})
    torch.manual_seed(0)
    return build_model(cfg, num_labels=len(classes), image_size=32, classes=list(classes))


@pytest.mark.parametrize("kind", KINDS)
def test_labels_whose_prompts_are_cut_to_the_same_tokens_are_refused(kind):
    classes = ["fat", "schwannian stroma poor differentiating", "schwannian stroma poor undifferentiated"]
    with pytest.raises(ConfigError, match="'schwannian stroma poor differentiating' and 'schwannian stroma poor "
                                          "undifferentiated'.*clip.model.towers.max_length"):
        _zero_shot(kind, classes, max_length=8)
    model = _zero_shot(kind, classes, max_length=32)  # room for the whole prompts: distinct, built
    with torch.no_grad():
        logits = model(pixel_values=torch.randn(2, 3, 32, 32))
    assert not torch.allclose(logits[:, 1], logits[:, 2])


def test_labels_the_uncased_tokenizer_reads_alike_are_refused():
    """The tiny towers' uncased WordPiece tokenizer drops accents: `Ölfleck` and `Olfleck` are one prompt."""
    with pytest.raises(ConfigError, match="'Ölfleck' and 'Olfleck'"):
        _zero_shot("tiny", ["fat", "Ölfleck", "Olfleck"])


@pytest.mark.parametrize("kind", KINDS)
def test_a_label_that_is_a_prefix_of_another_builds_and_scores_apart(kind):
    model = _zero_shot(kind, ["fat", "fat necrosis", "necrosis"])
    with torch.no_grad():
        logits = model(pixel_values=torch.randn(2, 3, 32, 32))
    assert not torch.allclose(logits[:, 0], logits[:, 1])

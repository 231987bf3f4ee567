"""The CLIP recipe's config section (`clip:`): the towers, their unfreezing, the fusion, the head, the loss.

Shared training settings are in `train:`; `train.lr` is the head's peak learning rate and `clip.tower_lr` the
towers' (the seed: 1e-4 and 1e-5), both following `train.lr_schedule`. Gradient clipping is
`distributed.gradient_clipping` (default 1.0, the seed's), mixed precision `distributed.precision`.
"""
from __future__ import annotations

from typing import Annotated, List, Literal, Optional

from pydantic import Field, field_validator

from ...core.config import PathText, Section

MAX_K = 3
"""j-of-k accuracies get table names for j = 1..MAX_K (the seed's 1-, 2- and 3-label accuracy)."""

METRIC_NAMES = ("micro_auroc", "macro_auroc", "micro_f1", "macro_f1", "micro_precision", "macro_precision",
                "micro_recall", "macro_recall", "hamming_loss",
                *(f"at_least_{j}_of_top_k" for j in range(1, MAX_K + 1)))
"""Scalar metrics of an evaluation (the F1, precision, recall, Hamming and j-of-k ones on the top-k prediction)."""

LOWER_IS_BETTER = frozenset({"loss", "hamming_loss"})
METRIC_SETTINGS = ["clip.top_k"]
"""Config keys that change how the metrics are computed (the F1s are of the top-k prediction): the registry's
alias compares only runs with equal values (`ModelPackage.metric_settings`)."""

LOSS_SETTINGS = ["clip.pos_weight"]
"""Config keys that change the `loss` alone (BCE's positive weights scale it; the top-k and AUROC metrics do not
read them): a loss-chosen alias compares only runs with equal values."""


def metric_settings(metric: str) -> List[str]:
    """The config keys two runs must share for their `metric` (`best/val/loss`, `val/micro_f1`) to be compared."""
    return METRIC_SETTINGS + (LOSS_SETTINGS if metric.rsplit("/", 1)[-1] == "loss" else [])


class TinyClipConfig(Section):
    """A random CLIP of test size (both towers), built from a transformers `CLIPConfig`, for tests and demos."""

    hidden: int = Field(32, ge=8)
    """Width of both towers' transformer blocks."""

    layers: int = Field(4, ge=1)
    """Transformer blocks per tower."""

    heads: int = Field(2, ge=1)
    """Attention heads per block."""

    patch_size: int = Field(8, ge=1)
    """Vision patch size in pixels (`data.loader.image_size` must be a multiple of it)."""

    projection_dim: int = Field(32, ge=4)
    """Width of the shared image-text embedding space."""


class ClipTowersConfig(Section):
    name: PathText = "tiny"
    """`tiny` (random, offline), or a transformers CLIP name or local folder loaded with
    `CLIPModel.from_pretrained` (e.g. `openai/clip-vit-large-patch14`, `vinid/plip`)."""

    unfreeze_blocks: int = Field(2, ge=0)
    """Train the last N transformer blocks of EACH tower; the rest of the towers (embeddings, earlier blocks,
    final layer norms, projections) stays frozen. 0 trains the head only."""

    max_length: int = Field(77, ge=8)
    """Caption token limit (CLIP's text position embeddings hold 77: a larger value is capped there, with a
    warning)."""

    tiny: TinyClipConfig = TinyClipConfig()
    """The tiny random CLIP's sizes (used when name is `tiny`)."""


class ClipModelConfig(Section):
    towers: ClipTowersConfig = ClipTowersConfig()
    """The image and text towers of one CLIP model."""

    fusion: Literal["concat", "sum", "prmf", "image_only", "text_only", "zero_shot"] = "concat"
    """How the image and text embeddings meet: concatenated (the seed's choice), summed, `prmf` (the MMLNB
    confidence block, models.fusion_blocks.PRMF: alpha T + (1 - alpha) proj(I), trained with the head), or one
    tower alone (the single-tower baselines: the other tower is not run). `zero_shot`: the zero-shot CLIP
    baseline, logits = logit_scale.exp() * cos(image, text(prompt(label))), no head, nothing trains (the recipe
    evaluates and exports without epochs)."""

    zero_shot_prompt: str = "A pathology image of {label}"
    """The zero-shot prompt of each label (fusion=zero_shot); `{label}` is replaced by the label name."""

    @field_validator("zero_shot_prompt")
    @classmethod
    def _has_label_placeholder(cls, template: str) -> str:
        # checked when the config loads (whatever the fusion: an ablation's zero_shot row sets it later), so
        # `config validate` and a pipeline's start refuse it before any stage; every label would get one prompt
        if "{label}" not in template:
            raise ValueError("no {label} placeholder (each label's prompt would be the same "
                             "text, so the same score); e.g. 'A pathology image of {label}'")
        return template

    prmf_confidence: Literal["paper", "authors"] = "paper"
    """PRMF's confidence network (fusion=prmf): one linear layer on [I; T] (the paper's equation) or the MLP of
    the authors' code."""

    prmf_hidden: int = Field(256, ge=1)
    """Hidden width of PRMF's `authors` confidence MLP."""

    image_encoder: str = "clip"
    """The image branch: `clip` (the CLIP image tower) or an image encoder of models.encoders (`resnet50`: the
    seed's image-only baseline; `tiny`: random, for tests), normalised with ImageNet statistics."""

    image_encoder_pretrained: bool = True
    """Load the image encoder's ImageNet weights (they must be in the torch cache; false: random)."""

    image_encoder_weights_path: Optional[PathText] = None
    """A local state-dict file (safetensors, or torch loaded with weights_only) the image encoder starts from
    instead of its default weights; for a pathology model also its model folder as downloaded from the Hub (an
    offline machine). Read for training only: an export holds the trained weights."""

    image_encoder_trainable: Optional[List[str]] = None
    """The image encoder's stages that train (the rest is frozen, batch norms included); null: its last stage
    (`layer4` for resnet50, `stage3` for tiny). Names: resnet50 `layer1`..`layer4`, tiny `stage1`..`stage3`, or
    an index path into the encoder body (e.g. `7`)."""

    text_encoder: str = "clip"
    """The text branch: `clip` (the CLIP text tower) or a BERT-family encoder of models.encoders (`tiny-bert`,
    `minilm`, `dmis-lab/biobert-v1.1`, `microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract`: the seed's
    text-only baseline), its last `towers.unfreeze_blocks` encoder layers trainable."""

    text_encoder_pooling: Literal["pooler", "cls", "mean"] = "cls"
    """How the BERT text encoder's token states become one vector (its pooler stays frozen when used)."""

    head_widths: List[Annotated[int, Field(ge=1)]] = [512, 512, 512]
    """Hidden widths of the MLP head (the seed's 4 layers: 3 hidden of 512, then one per label), each at least 1;
    an empty list is a linear head on the fused embedding."""

    head_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout after each hidden layer of the head (the seed uses none)."""


class ClipConfig(Section):
    model: ClipModelConfig = ClipModelConfig()
    """The classifier: towers, fusion and head (what the export stores)."""

    tower_lr: float = Field(1e-5, gt=0.0)
    """Peak learning rate of the unfrozen tower blocks (the head's is `train.lr`)."""

    pos_weight: Optional[List[Annotated[float, Field(gt=0.0)]]] = None
    """BCEWithLogitsLoss positive-class weights, one per label in the shard set's vocabulary order (null: 1), each
    positive (a negative weight would penalise a label's positives: the run would learn to miss it)."""

    top_k: int = Field(3, ge=1)
    """The top-k prediction: the k highest-scoring labels of a sample are predicted positive."""

"""The CLIP recipe's comparison table (seed 002): the fused model against its baselines, one row per variant.

    mmlnb-dist ablate --config clip-multilabel data.shards=... [--rows concat,sum] [--seeds 0,1,2]

Rows are dotted overrides on the study's config; the first row is the reference (the seed's model). The fusion
rows keep the study's towers (CLIP towers, or other encoders composed by `clip.model.image_encoder` /
`text_encoder`); the last three rows are the seed's baselines. The tiny profile's baselines use small encoders
(a ResNet-50 without ImageNet weights at the profile's image size, the offline tiny BERT); with pretrained towers
the seed's baselines are ResNet-50 (ImageNet) and BioBERT.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

METRICS = ("micro_f1", "macro_f1", "micro_auroc", "macro_auroc", "hamming_loss", "at_least_1_of_top_k",
           "at_least_2_of_top_k")
"""The table's columns: the seed's metrics on the top-k prediction and the threshold-free AUROCs."""


def metrics(cfg: Any) -> List[str]:
    """The columns of `cfg`'s table: METRICS without the `at_least_{j}_of_top_k` that clip.top_k < j leaves with
    no value (a run reports j-of-k accuracies for j <= k only: the column would read n/a in every row)."""
    from .metrics import within_top_k

    return [m for m in METRICS if within_top_k(m, cfg.clip.top_k)]


def rows(cfg: Any) -> Dict[str, Tuple[str, List[str]]]:
    """{row: (what it changes, overrides)} for `cfg` (its towers decide the baselines' encoders)."""
    tiny = str(cfg.clip.model.towers.name).startswith("tiny")
    text_encoder = "tiny-bert" if tiny else "dmis-lab/biobert-v1.1"
    return {
        "concat": ("image and text embeddings concatenated (the seed's model)", ["clip.model.fusion=concat"]),
        "sum": ("image and text embeddings summed", ["clip.model.fusion=sum"]),
        "prmf": ("MMLNB's PRMF confidence fusion of the two embeddings", ["clip.model.fusion=prmf"]),
        "image_only": ("the image tower alone", ["clip.model.fusion=image_only"]),
        "text_only": ("the text tower alone", ["clip.model.fusion=text_only"]),
        "zero_shot": ("zero-shot CLIP, prompt per label, nothing trained", ["clip.model.fusion=zero_shot"]),
        "resnet50_mlp": ("ResNet-50 (layer4 trains) + MLP, image only",
                         ["clip.model.fusion=image_only", "clip.model.image_encoder=resnet50",
                          f"clip.model.image_encoder_pretrained={'false' if tiny else 'true'}"]),
        "bert_mlp": (f"{text_encoder} (last blocks train) + MLP, text only",
                     ["clip.model.fusion=text_only", f"clip.model.text_encoder={text_encoder}"]),
    }


def unfit(cfg: Any) -> Optional[str]:
    """Why a study row's config (`cfg`, the row's overrides applied) builds no model, else None: checked for every
    row before the study trains its first one (`zero_shot` on encoder branches, `sum` on encoders of two widths
    failed when the row's turn came, after the rows before it had trained for minutes)."""
    from ...core.errors import ConfigError, UserError
    from .branches import build_image_branch, build_text_branch
    from .metrics import check_metric_config
    from .model import branch_plan

    m = cfg.clip.model
    try:
        plan = branch_plan(m)
        check_metric_config(cfg)  # a zero_shot row of a loss-chosen study reports no loss to pick or tune by
    except ConfigError as err:
        return str(err)
    if m.fusion == "sum" and plan["encoder_image"] and plan["encoder_text"]:  # (two CLIP towers share a width)
        try:
            image, text = build_image_branch(m, pretrained=False).embed_dim, build_text_branch(m).embed_dim
        except UserError as err:  # an encoder name no branch builds (read by this row, maybe not by the config)
            return str(err)
        if image != text:
            return (f"clip.model.fusion: sum needs equal image and text widths, but {m.image_encoder} gives "
                    f"{image} and {m.text_encoder} {text}")
    return None

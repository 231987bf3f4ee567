"""The CLIP recipe's comparison table (seed 002): the fused model against its baselines, one row per variant.

    mmlnb-dist ablate --config clip-multilabel data.shards=... [--rows concat,sum] [--seeds 0,1,2]

Rows are dotted overrides on the study's config; the first row is the reference (the seed's model). The fusion
rows keep the study's towers (CLIP towers, or other encoders composed by `clip.model.image_encoder` /
`text_encoder`); the last three rows are the seed's baselines. The tiny profile's baselines use small encoders
(a ResNet-50 without ImageNet weights at the profile's image size, the offline tiny BERT); with pretrained towers
the seed's baselines are ResNet-50 (ImageNet) and BioBERT.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

METRICS = ("micro_f1", "macro_f1", "micro_auroc", "macro_auroc", "hamming_loss", "at_least_1_of_top_k",
           "at_least_2_of_top_k")
"""The table's columns: the seed's metrics on the top-k prediction and the threshold-free AUROCs."""


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

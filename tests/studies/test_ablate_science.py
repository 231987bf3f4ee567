"""The science of Table 2 on data built for it: patches whose morphology is ambiguous for half of them (painted
as a random class) while the reference descriptions follow the label (20% of them noisy: generic or of a wrong
class). There the text carries information the image does not, so the paper's claims must show:
full (PRMF) beats no_text by at least 5 points of test balanced accuracy, and PRMF is at least as good as
concatenation, both as means over 3 seeds. The text branch reads the shards' reference descriptions
(`descriptions="shards"`: no VLM stage, to keep it cheap)."""
from __future__ import annotations

import pytest

from support.fusion import CPU_DEMO

SEEDS = [0, 1, 2]
# 24 epochs of 6 steps, the profile's three phases scaled (text encoder frozen, both train, both frozen: the last
# third reads cached features, so it costs little). The 6 epochs of 3 steps used until 2026-12-03 left the full
# model predicting one class on 2 seeds of 3 (test BAcc 0.456): the claims were read off untrained models.
EPOCHS = 24
PHASES = ("fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 8}, "
          "{start_epoch: 16, train_image_encoder: false, train_text_encoder: false}]")
MARGIN = 0.05
"""full - no_text in balanced accuracy (mean over seeds); chance is 1/3 and the image alone can reach at most
about 0.5 + 0.5/3 on this set, while the text is right for 90% of patches (10% are of a wrong class).
Measured 2026-12-03: 0.828 against 0.550."""


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    from mmlnb_dist.config import BuildConfig, load_config
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset
    from mmlnb_dist.studies import run_study

    root = tmp_path_factory.mktemp("science")
    summary = make_synthetic_dataset(root / "src", n=360, size=64, n_slides=18, noisy_description_rate=0.2,
                                     ambiguous_rate=0.5, seed=0)
    assert (summary["ambiguous_patches"], summary["noisy_descriptions"]) == (180, 72)
    build = BuildConfig(max_samples_per_shard=60, val_fraction=0.2, test_fraction=0.3, image_format="png",
                        image_size=32, seed=0)
    shards = root / "shards"
    build_shards(collect_samples(root / "src", CLASSES, descriptions=root / "src" / "descriptions.jsonl"), shards,
                 build, CLASSES, progress=False)
    cfg = load_config(CPU_DEMO, [f"data.shards={shards}", f"run.output_dir={root / 'runs'}", "run.name=science",
                                 "tracking.backends=[stdout]", "data.loader.num_workers=0",
                                 "data.loader.image_size=32", f"train.epochs={EPOCHS}",
                                 "fusion.curriculum.ramp_start=8", "fusion.curriculum.ramp_end=16", PHASES])
    study = run_study(cfg, rows=["full", "no_text", "concat"], seeds=SEEDS, descriptions="shards")
    print(study.markdown)
    return study.table


def _bacc(table):
    bacc = {row: table[row]["balanced_accuracy_mean"] for row in ("full", "no_text", "concat")}
    assert all(len(table[row]["balanced_accuracy"]) == len(SEEDS) for row in bacc)
    return bacc


@pytest.mark.slow
def test_text_helps_where_the_image_is_ambiguous(table):
    bacc = _bacc(table)
    assert bacc["full"] - bacc["no_text"] >= MARGIN, bacc


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=(
    "the paper's claim does not hold on this set (test BAcc, mean +- std of 3 seeds, measured 2026-12-03 at this "
    "test's budget): PRMF 0.828 +- 0.032 vs concat 0.853 +- 0.027 (fixed alpha 0.5: 0.850, no curriculum: 0.844; "
    "the authors' two-layer confidence net: 0.825 +- 0.014). The confidence net does not learn to distrust the "
    "generic descriptions (mean test alpha 0.75 / 0.75 / 0.48 on them against 0.72 / 0.77 / 0.72 on informative "
    "ones). Earlier budgets: 6 epochs of 180 patches 0.456 vs 0.567 (untrained: one class predicted on 2 seeds), "
    "pretrained MiniLM text encoder 0.756 vs 0.700 at 6 epochs, 0.733 vs 0.850 at 9. Kept visible instead of "
    "tuned until it passes"))
def test_prmf_is_not_worse_than_concat(table):
    bacc = _bacc(table)
    assert bacc["full"] >= bacc["concat"], bacc


def test_ambiguous_patches_keep_their_labels_text_and_the_setting_is_off_by_default(tmp_path):
    import json

    import numpy as np

    from mmlnb_dist.data.synthetic import make_synthetic_dataset, render_patch

    plain = make_synthetic_dataset(tmp_path / "plain", n=24, size=32, n_slides=6, noisy_description_rate=0.0)
    off = make_synthetic_dataset(tmp_path / "off", n=24, size=32, n_slides=6, noisy_description_rate=0.0,
                                 ambiguous_rate=0.0)
    mixed = make_synthetic_dataset(tmp_path / "mixed", n=24, size=32, n_slides=6, noisy_description_rate=0.0,
                                   ambiguous_rate=0.5)
    assert (plain["ambiguous_patches"], off["ambiguous_patches"], mixed["ambiguous_patches"]) == (0, 0, 12)
    files = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*.png"))
    assert all((tmp_path / "plain" / f).read_bytes() == (tmp_path / "off" / f).read_bytes() for f in files)
    changed = [f for f in files if (tmp_path / "plain" / f).read_bytes() != (tmp_path / "mixed" / f).read_bytes()]
    assert 0 < len(changed) <= 12  # an ambiguous patch may draw its own class
    # every description still names its label's class (the text stays informative)
    words = {"UD": ("undifferentiated", "sheets", "primitive", "highly cellular"),
             "PD": ("neuropil", "neuroblast"), "D": ("ganglion", "differentiat", "large")}
    for line in (tmp_path / "mixed" / "descriptions.jsonl").read_text().splitlines():
        record = json.loads(line)
        label = record["file"].split("/")[0]
        assert any(w in record["description"].lower() for w in words[label]), record
    assert np.asarray(render_patch("UD", 8, np.random.default_rng(0))).shape == (8, 8, 3)

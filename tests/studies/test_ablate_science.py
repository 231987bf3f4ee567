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
PHASES = ("fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 2}, "
          "{start_epoch: 4, train_image_encoder: false, train_text_encoder: false}]")
MARGIN = 0.05
"""full - no_text in balanced accuracy (mean over seeds); chance is 1/3 and the image alone can reach at most
about 0.5 + 0.5/3 on this set, while the text is right for 90% of patches (10% are of a wrong class)."""


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    from mmlnb_dist.config import BuildConfig, load_config
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset
    from mmlnb_dist.studies import run_study

    root = tmp_path_factory.mktemp("science")
    summary = make_synthetic_dataset(root / "src", n=180, size=64, n_slides=18, noisy_description_rate=0.2,
                                     ambiguous_rate=0.5, seed=0)
    assert (summary["ambiguous_patches"], summary["noisy_descriptions"]) == (90, 36)
    build = BuildConfig(max_samples_per_shard=60, val_fraction=0.2, test_fraction=0.3, image_format="png",
                        image_size=32, seed=0)
    shards = root / "shards"
    build_shards(collect_samples(root / "src", CLASSES, descriptions=root / "src" / "descriptions.jsonl"), shards,
                 build, CLASSES, progress=False)
    cfg = load_config(CPU_DEMO, [f"data.shards={shards}", f"run.output_dir={root / 'runs'}", "run.name=science",
                                 "tracking.backends=[stdout]", "data.loader.num_workers=0",
                                 "data.loader.image_size=32", "train.epochs=6", "fusion.curriculum.ramp_start=2",
                                 "fusion.curriculum.ramp_end=4", PHASES])
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
    "the paper's claim does not hold robustly on this set (test BAcc, mean of 3 seeds, measured 2026-12-02): "
    "tiny-bert text encoder, 6 epochs: PRMF 0.456 vs concat 0.567 (PRMF predicted one class on 2 seeds); 12 epochs: "
    "0.689 vs 0.811. Pretrained MiniLM text encoder (closer to the paper's BERT), 6 epochs: 0.756 vs 0.700, but "
    "9 epochs: 0.733 vs 0.850. Kept visible instead of tuned until it passes"))
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

"""benchmarks/vlm_vision_probe.py (docs/vlm.md, "Where the ceiling lies") probes what the language model receives:
its features are the model's own image embeddings (`get_image_features`), one row of merged tokens per image, and
the script runs end to end on a shard set with train and test splits."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def test_probe_features_are_the_image_embeddings_the_language_model_receives(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import vlm_vision_probe as probe
    from PIL import Image

    from mmlnb_dist.config import BuildConfig
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset, render_patch
    from mmlnb_dist.recipes.vlm.model import load_vlm

    cache = tmp_path / "cache"
    model, processor = load_vlm("tiny", min_pixels=84 * 84, max_pixels=84 * 84, cache_dir=cache)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(render_patch(c, 84, rng)) for c in CLASSES]
    ours = probe.merged_tokens(model, processor, images, batch=2)
    enc = processor.image_processor(images=images, return_tensors="pt")
    with torch.no_grad():
        out = model.model.get_image_features(enc["pixel_values"], image_grid_thw=enc["image_grid_thw"])
    reference = out.pooler_output if hasattr(out, "pooler_output") else out
    reference = torch.cat(list(reference)) if isinstance(reference, (tuple, list)) else reference
    hidden = model.config.text_config.hidden_size
    assert ours.shape == (3, 9 * hidden)  # 84 px -> 6 x 6 patches -> 3 x 3 merged tokens per image
    np.testing.assert_allclose(ours, reference.reshape(3, -1).numpy(), rtol=0, atol=1e-5)

    make_synthetic_dataset(tmp_path / "src", n=60, size=64, n_slides=12, seed=0)
    build_shards(collect_samples(tmp_path / "src", CLASSES), tmp_path / "shards",
                 BuildConfig(max_samples_per_shard=30, val_fraction=0.2, test_fraction=0.3, image_format="png",
                             image_size=64, seed=0), CLASSES, progress=False)
    probe.main(["--shards", str(tmp_path / "shards"), "--sizes", "56", "--cache-dir", str(cache)])
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 56 |")]
    assert len(row) == 1 and row[0].split("|")[2].strip() == "4", row
    scores = [float(x) for x in row[0].split("|")[3].split("/")]
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores), row

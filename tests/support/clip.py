"""A tiny multi-label image + caption shard set and configs for the CLIP recipe tests (tests/recipes/clip/).

Six labels: three are visible only in the image (a colour channel switched on), three only in the caption (a
word in the text), so a model must use both towers to get them all."""
from __future__ import annotations

import io
from pathlib import Path
from typing import List

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CLIP_PROFILE = ROOT / "mmlnb_dist" / "profiles" / "clip-multilabel.yaml"
IMAGE_LABELS = ["red", "green", "blue"]
TEXT_LABELS = ["necrosis", "mitoses", "fat"]
VOCAB = IMAGE_LABELS + TEXT_LABELS


def caption_shards(root: Path, n: int = 96, size: int = 32, seed: int = 0, test_fraction: float = 0.0) -> Path:
    """`n` images (1 to 3 labels each) with captions in `txt`, built into `root/shards` (25% validation)."""
    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig

    rng = np.random.default_rng(seed)
    specs = []
    for i in range(n):
        labels = [name for name in VOCAB if rng.random() < 0.3] or [VOCAB[int(rng.integers(len(VOCAB)))]]
        labels = labels[:3]
        img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        for c, name in enumerate(IMAGE_LABELS):
            if name in labels:
                img[..., c] += 180
        words = [w for w in TEXT_LABELS if w in labels] + ["tissue", "patch"]
        rng.shuffle(words)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        specs.append(SampleSpec(f"s{i:03d}", labels[0], buf.getvalue(), description="a " + " ".join(words),
                                meta={"labels": labels}))
    build = BuildConfig(max_samples_per_shard=16, val_fraction=0.25, test_fraction=test_fraction,
                        image_format="png", image_size=size, seed=seed)
    build_shards(specs, root / "shards", build, VOCAB, progress=False)
    return root / "shards"


def clip_config(shards: Path, out: Path, *extra: str, name: str = "clip"):
    """The shipped clip-multilabel profile on `shards`: 32 px, stdout logging, no loader workers."""
    from mmlnb_dist.config import load_config

    overrides: List[str] = [f"data.shards={shards}", f"run.output_dir={out}", f"run.name={name}",
                            "data.loader.num_workers=0", "data.loader.image_size=32", "tracking.backends=[stdout]",
                            *extra]
    return load_config(CLIP_PROFILE, overrides)


def checkpoint_model(cfg, run_dir: Path, tag: str):
    """The classifier rebuilt from the config with the checkpoint's consolidated weights (no export involved)."""
    from mmlnb_dist.core.checkpoint import fp32_state_dict_from_checkpoint
    from mmlnb_dist.recipes.clip.model import build_model

    _, state = fp32_state_dict_from_checkpoint(run_dir / "checkpoints", tag)
    model = build_model(cfg.clip.model, len(VOCAB), cfg.data.loader.image_size, classes=VOCAB)
    model.load_state_dict(state, strict=True)
    return model.eval()


def export_matches_checkpoint(result, cfg) -> dict:
    """Load the export, compare its logits with the best checkpoint's on a fixed batch; return the meta."""
    from mmlnb_dist.recipes.clip.export import load_exported_model

    model, meta = load_exported_model(result["export_dir"])
    reference = checkpoint_model(cfg, Path(result["run_dir"]), f"epoch-{result['best_epoch']:04d}")
    torch.manual_seed(3)
    pixels, texts = torch.randn(4, 3, 32, 32), ["a fat patch", "tissue", "necrosis and mitoses", ""]
    with torch.no_grad():
        got = model(**model.inputs(pixels, texts, torch.device("cpu")))
        want = reference(**reference.inputs(pixels, texts, torch.device("cpu")))
    assert got.shape == (4, len(VOCAB))
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    return meta

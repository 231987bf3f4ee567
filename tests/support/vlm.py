"""Shared helpers of the VLM/describe tests (no tests here): small image-description shard sets.

The pairs come from the data engineer's synthetic generator when it is present (`make_synthetic_dataset`),
else from a small built-in generator with the same three classes and class-specific keywords.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmlnb_dist.core.tracking.server import free_port

from support.processes import run_group

ROOT = Path(__file__).resolve().parents[2]

# Words that name each class in a description. Checked in order D-specific words before the bare
# "differentiated" so that "poorly differentiated" / "undifferentiated" are not counted as D.
FALLBACK_KEYWORDS: Dict[str, Sequence[str]] = {
    "UD": ("undifferentiated",),
    "PD": ("poorly differentiated",),
    "D": ("ganglion", "schwannian"),
}

_FALLBACK_TEXT = {
    "UD": "undifferentiated neuroblastoma with sheets of small round blue cells and no neuropil.",
    "PD": "poorly differentiated neuroblastoma with neuropil background and rosettes.",
    "D": "differentiated neuroblastoma with maturing ganglion cells in schwannian stroma.",
}
_FALLBACK_COLOR = {"UD": (70, 60, 160), "PD": (170, 90, 170), "D": (230, 170, 190)}


def _fallback_samples(n: int, size: int, seed: int):
    from PIL import Image

    from mmlnb_dist.data.build import SampleSpec

    rng = np.random.default_rng(seed)
    classes = ["UD", "PD", "D"]
    out = []
    for i in range(n):
        c = classes[i % 3]
        base = np.array(_FALLBACK_COLOR[c], dtype=np.float32)
        img = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        out.append(SampleSpec(key=f"s{i:05d}", label=c, image=buf.getvalue(), slide_id=f"slide{i % 12}",
                              description=_FALLBACK_TEXT[c]))
    return out


def make_pairs(out_dir: Path, n: int = 48, size: int = 56, seed: int = 0, per_shard: int = 8,
               val_fraction: float = 0.25, test_fraction: float = 0.0) -> Path:
    """A shard set of `n` image-description pairs (train/val[/test]) of `size` px images."""
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.config import BuildConfig

    build = BuildConfig(max_samples_per_shard=per_shard, val_fraction=val_fraction, test_fraction=test_fraction,
                        image_format="png", image_size=size, group_by_slide=False, seed=seed)
    samples = synthetic_samples(out_dir.parent / (out_dir.name + "-src"), n, size, seed)
    build_shards(samples, out_dir, build, ["UD", "PD", "D"], progress=False)
    return out_dir


def synthetic_samples(src_dir: Path, n: int, size: int, seed: int):
    try:
        from mmlnb_dist.data.collect import collect_samples
        from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset
    except ImportError:
        return _fallback_samples(n, size, seed)
    make_synthetic_dataset(src_dir, n=n, size=size, n_slides=max(6, n // 8), noisy_description_rate=0.0,
                           seed=seed)
    return collect_samples(src_dir, CLASSES, descriptions=src_dir / "descriptions.jsonl")


# Class-exclusive phrases of mmlnb_dist.data.synthetic's descriptions (each description opens with an
# architecture sentence that contains one of them; none occurs in another class's phrases).
SYNTHETIC_KEYWORDS: Dict[str, Sequence[str]] = {
    "UD": ("sheets", "packed", "small round blue", "undifferentiated"),
    "PD": ("nests of small", "clusters of neuroblasts", "dispersed", "scattered small round", "poorly differentiated",
           "homer wright"),
    "D": ("ganglion-like", "vesicular", "schwannian", "differentiating", "ample pink", "enlarged"),
}


def class_keywords() -> Dict[str, Sequence[str]]:
    try:
        import mmlnb_dist.data.synthetic  # noqa: F401
    except ImportError:
        return FALLBACK_KEYWORDS
    return SYNTHETIC_KEYWORDS


def names_class(text: str, label: str, keywords: Optional[Dict[str, Sequence[str]]] = None) -> bool:
    """The description names `label` and no other class (by the class keywords)."""
    keywords = keywords or class_keywords()
    low = text.lower()
    hits = {c for c, words in keywords.items() if any(w in low for w in words)}
    return hits == {label}


def torchrun(args: List[str], nproc: int = 2, timeout: int = 900, env_extra: Optional[dict] = None,
             cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node N -m mmlnb_dist.cli ARGS` on the CPU (gloo). `timeout` only guards against a
    hang (two ranks on two cores shared with other jobs can take minutes)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "mmlnb_dist.cli", *args]
    return run_group(cmd, cwd=cwd or ROOT, env=env, timeout=timeout)


def write_random_adapter(vlm_cfg, out: Path, seed: int, pixels: int) -> Path:
    """A random, non-zero LoRA adapter of the tiny VLM (`vlm_cfg`: a `vlm` config section), saved as
    finetune-vlm saves one: two seeds give two adapters that describe differently."""
    import torch

    from mmlnb_dist.recipes.vlm import model as V

    base, _ = V.load_vlm("tiny", min_pixels=pixels, max_pixels=pixels, cache_dir=vlm_cfg.cache_dir)
    peft_model = V.apply_lora(base, vlm_cfg.lora)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    peft_model.save_pretrained(str(out))
    return out


def noise_images(seed: int, n: int = 3, size: int = 56):
    """`n` PIL images of uniform noise (`size` px square), the same for the same seed."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


DESCRIBE_PIXELS = 56 * 56
"""The pixel bounds (both) of `describe_config`: 4 image tokens per 56 px image."""


def describe_config(tmp: Path, *extra: str):
    """The cpu-demo profile set up to describe with the random tiny VLM at 56 px: short, batched generation,
    stdout tracking, model cache and runs under `tmp`."""
    from mmlnb_dist.config import load_config

    return load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
        f"vlm.min_pixels={DESCRIBE_PIXELS}", f"vlm.max_pixels={DESCRIBE_PIXELS}", f"vlm.cache_dir={tmp / 'cache'}",
        "vlm.tiny_vision=random", "vlm.generation.max_new_tokens=4", "vlm.generation.batch_size=4",
        "tracking.backends=[stdout]", f"run.output_dir={tmp / 'runs'}", *extra])


class Interrupted(Exception):
    """Stands in for a kill between two checkpoints (raised from a recipe's report hook)."""


def finetune_config(tmp: Path, name: str, *extra: str):
    """The cpu-demo profile set up to fine-tune the random tiny VLM at 56 px on `tmp/pairs` (`make_pairs`): global
    batch 4, LoRA dropout 0.1, lr 1e-2, stdout tracking, model cache and runs under `tmp`; `extra` sets the steps,
    validations and checkpoints."""
    from mmlnb_dist.config import load_config

    return load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
        f"vlm.pairs={tmp / 'pairs'}", f"run.output_dir={tmp / 'runs'}", f"run.name={name}",
        f"vlm.cache_dir={tmp / 'cache'}", "vlm.tiny_vision=random", f"vlm.min_pixels={DESCRIBE_PIXELS}",
        f"vlm.max_pixels={DESCRIBE_PIXELS}", "tracking.backends=[stdout]", "vlm.global_batch_size=4",
        "vlm.lora.dropout=0.1", "vlm.lr=1e-2", *extra])


def marker_best_adapter(run_dir: Path):
    """A `BestAdapter` whose collective save writes a marker adapter file naming its call; returns it and the list
    of folders saved so far."""
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.recipes.vlm.best import BestAdapter

    saved: List[str] = []

    def save(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_model.safetensors").write_text(f"saved {len(saved)}")
        saved.append(folder.name)
        return folder

    return BestAdapter(run_dir, DistEnv(), save), saved


def flat_png(size, colour=(90, 40, 160)) -> bytes:
    """A one-colour PNG of `size` (width, height): its size, not its content, is what a length check reads."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", tuple(size), colour).save(buf, format="PNG")
    return buf.getvalue()

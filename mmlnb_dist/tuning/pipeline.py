"""The `vlm-fusion` trial recipe: fine-tune the VLM (LoRA), describe the shards, train the fusion classifier.

Descriptions are expensive and depend only on the VLM settings and the input shards, so they are cached in
the search's shared cache folder under a key of (vlm section, seed, input manifest digest): a trial whose
adapter settings already ran (same LoRA rank/alpha/dropout...) reuses the adapter and the described shards
and goes straight to fusion training. Only rank 0 decides; all ranks then read the same folder.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional

DONE = "DONE.json"


def description_key(cfg) -> str:
    """Identity of a description set: the whole `vlm` section, the seed and the input shards' manifest."""
    manifest = Path(cfg.data.shards) / "manifest.json"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else str(cfg.data.shards)
    payload = json.dumps({"vlm": cfg.vlm.model_dump(mode="json"), "seed": cfg.run.seed, "shards": digest},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run(cfg, env=None, report: Optional[Callable[[int, Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    from ..distributed import DistEnv, barrier
    from ..recipes import describe, finetune_vlm, train_fusion

    env = env or DistEnv.from_environment()
    cache_root = Path(cfg.tune.shared_cache_dir or cfg.run.dir / "cache") / "descriptions"
    entry = cache_root / description_key(cfg)
    hit = (entry / DONE).is_file()
    if not hit:
        vlm_cfg = cfg.model_copy(deep=True)
        vlm_cfg.run.name = f"{cfg.run.name}-vlm"
        vlm_out = finetune_vlm.run(vlm_cfg, env)
        described = describe.run_describe(cfg, adapter=vlm_out.get("adapter_dir"), out=entry / "shards", env=env,
                                          progress=False)
        barrier(env)
        if env.rank == 0:
            (entry / DONE).write_text(json.dumps({"adapter_dir": vlm_out.get("adapter_dir"),
                                                  "vlm_val_loss": vlm_out.get("val/loss"),
                                                  "num_samples": described.get("num_samples")}, default=str))
        barrier(env)
    fusion_cfg = cfg.model_copy(deep=True)
    fusion_cfg.data.shards = entry / "shards"
    result = train_fusion.run(fusion_cfg, env, report)
    info = json.loads((entry / DONE).read_text())
    return {**result, "descriptions": str(entry / "shards"), "cache/description_hit": float(hit),
            "vlm/val_loss": info.get("vlm_val_loss")}

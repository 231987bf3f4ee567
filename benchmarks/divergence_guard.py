"""What the divergence guard (`core.divergence.LossWatch.step_done`) costs per optimizer step, against the
optimizer step it follows, on the same trainable parameters, in one run.

For each model: its trainable parameters get random gradients, then `--repeats` rounds alternate an AdamW step
(torch's, foreach) and the guard's check of the same parameters (the largest |weight|, one process: no all-reduce).
Models: the cpu-demo fusion classifier (tiny encoders), the clip-demo classifier (EfficientNet-Lite0 + MiniLM, last
stage / block trainable) and a VGG16 + 3-layer MLP head of the rtx4090 fusion profile's image size (all trainable,
random weights).

    .venv/bin/python benchmarks/divergence_guard.py [--repeats 20] [--out guard.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable, Dict

import torch

ROOT = Path(__file__).resolve().parents[1]


def _fusion_demo() -> torch.nn.Module:
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.fusion.model import build_classifier

    cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml")
    return build_classifier(cfg.fusion.model, 3)


def _clip_demo() -> torch.nn.Module:
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.clip.model import build_model

    cfg = load_config(ROOT / "launch/profiles/clip-demo.yaml")
    return build_model(cfg.clip.model, 12, cfg.data.loader.image_size)


def _vgg16() -> torch.nn.Module:
    import torchvision

    return torch.nn.Sequential(torchvision.models.vgg16(weights=None).features, torch.nn.Flatten(),
                               torch.nn.Linear(512 * 7 * 7, 256), torch.nn.ReLU(), torch.nn.Linear(256, 3))


MODELS: Dict[str, Callable[[], torch.nn.Module]] = {"fusion cpu-demo": _fusion_demo, "clip-demo": _clip_demo,
                                                    "VGG16 + head": _vgg16}


def measure(module: torch.nn.Module, repeats: int) -> Dict[str, float]:
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.core.divergence import LossWatch, trainable_tensors
    from mmlnb_dist.core.sections import DistributedConfig

    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    watch = LossWatch(DistEnv(), {"lr": 1e-4}, DistributedConfig())
    steps, checks, loss_only = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        optimizer.step()
        steps.append(time.perf_counter() - t0)
        watch.see(0.5)
        t0 = time.perf_counter()
        watch.step_done(True, "bench", module)  # a step whose weights are saved or evaluated next
        checks.append(time.perf_counter() - t0)
        watch.see(0.5)
        t0 = time.perf_counter()
        watch.step_done(True, "bench")  # every other step: the loss only
        loss_only.append(time.perf_counter() - t0)
    n = sum(t.numel() for t in trainable_tensors(module))
    step, check = statistics.median(steps[1:]), statistics.median(checks[1:])  # the first round warms up
    return {"trainable_params": n, "adamw_step_ms": 1e3 * step, "guard_ms": 1e3 * check, "ratio": check / step,
            "loss_only_us": 1e6 * statistics.median(loss_only[1:])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = {name: measure(build(), args.repeats) for name, build in MODELS.items()}
    print("| model | trainable parameters | AdamW step (ms) | guard reading the weights (ms) | guard / step | "
          "guard, loss only (us) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['trainable_params']:,} | {r['adamw_step_ms']:.2f} | {r['guard_ms']:.2f} | "
              f"{r['ratio']:.3f} | {r['loss_only_us']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

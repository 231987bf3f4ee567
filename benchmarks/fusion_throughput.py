"""Fusion training throughput: our trainer vs a loop that does what the authors' loop does.

Same data (synthetic shards), same model sizes (the cpu-demo encoders unless overridden), same epochs and
three-phase schedule, same per-epoch validation. The authors'-style loop runs the image encoder forward twice
per step (once for the fused logits, once more for the "image logits"), recomputes both encoders every step
of every epoch (nothing cached), and freezes by requires_grad only. Ours: one image forward, frozen encoders'
features cached, the final phase trains the heads from cached features.

    .venv/bin/python benchmarks/fusion_throughput.py [--n 240] [--epochs-per-phase 2] [key=value overrides]

`--levers fp32,bf16,cl,bf16+cl,compile` (issue 15, item 2) also runs ours once per lever set, the sets alternating
`--repeats` times (fusion.cpu_autocast / fusion.channels_last / fusion.compile), and reports each set's samples/s
in the phase where both encoders train and the end-to-end ratio extrapolated to the paper's 150 epochs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def authors_loop(cfg, classes) -> dict:
    """Per-phase wall time and samples/s of the authors'-style loop (no DeepSpeed, plain Adam)."""
    from mmlnb_dist.data.loader import build_loader
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.fusion.curriculum import curriculum_lambda, phase_index
    from mmlnb_dist.recipes.fusion.model import build_classifier
    from mmlnb_dist.recipes.fusion.steps import preprocess_for

    torch.manual_seed(cfg.run.seed)
    model = build_classifier(cfg.fusion.model, len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    bs = cfg.train.global_batch_size
    lc = cfg.data.loader
    shards = ShardSet.open(cfg.data.shards)
    preprocess = preprocess_for(shards.classes, lc.image_size, lc.augment)
    train = build_loader(shards, "train", preprocess, lc, rank=0, world_size=1, batch_size=bs, mode="train",
                         seed=cfg.run.seed)
    val = build_loader(shards, "val", preprocess, lc, rank=0, world_size=1, batch_size=bs, mode="eval",
                       seed=cfg.run.seed)
    phases: dict = {}
    for epoch in range(cfg.train.epochs):
        p = cfg.fusion.curriculum.phases[phase_index(cfg.fusion.curriculum, epoch)]
        for part, on in ((model.image_encoder, p.train_image_encoder), (model.text_encoder, p.train_text_encoder)):
            part.requires_grad_(on)
        lam = curriculum_lambda(cfg.fusion.curriculum, epoch)
        model.train()
        train.set_epoch(epoch)
        t0, n = time.perf_counter(), 0
        for batch in train:
            tok = model.text_encoder.tokenize(batch["text"])
            out = model(pixel_values=batch["image"], **tok)
            image_logits = model.image_head(model.image_encoder(batch["image"]))  # the second VGG forward
            loss = lam * F.cross_entropy(out["logits"], batch["label"]) + \
                (1 - lam) * F.cross_entropy(image_logits, batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(batch["label"])
        model.eval()
        with torch.no_grad():
            for batch in val:
                model(pixel_values=batch["image"], **model.text_encoder.tokenize(batch["text"]))
        dt = time.perf_counter() - t0
        rec = phases.setdefault(phase_index(cfg.fusion.curriculum, epoch), {"seconds": 0.0, "samples": 0})
        rec["seconds"] += dt
        rec["samples"] += n
    return phases


def ours(cfg) -> dict:
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    run(recipe_class("fusion"), cfg)
    phases: dict = {}
    for line in (Path(cfg.run.dir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "train_epoch/epoch_seconds" in rec:  # an epoch's summary (`core.tracking.epoch_summary`)
            ph = phases.setdefault(int(rec["train_epoch/phase"]), {"seconds": 0.0, "samples": 0})
            ph["seconds"] += rec["train_epoch/epoch_seconds"]
            ph["samples"] += int(round(rec["train_epoch/samples_per_s"] * rec["train_epoch/epoch_seconds"]))
    return phases


LEVERS = {"fp32": [], "bf16": ["fusion.cpu_autocast=true"], "cl": ["fusion.channels_last=true"],
          "bf16+cl": ["fusion.cpu_autocast=true", "fusion.channels_last=true"], "compile": ["fusion.compile=true"],
          "bf16+compile": ["fusion.cpu_autocast=true", "fusion.compile=true"]}


def extrapolate(authors_seconds: float, ours_seconds: float, ours_phases: dict, epochs: int,
                paper_epochs: int = 150) -> dict:
    """End-to-end ratio at the paper's schedule (same phase split). The authors' loop has no fixed cost: all of its
    time scales with epochs. Ours: the training epochs scale; the rest (start-up, cache fills, per-epoch validation,
    best-checkpoint reload, export) is bounded between "fixed" (ratio high) and "scales with epochs" (ratio low)."""
    scale = paper_epochs / epochs
    train = sum(p["seconds"] for p in ours_phases.values())
    other = ours_seconds - train
    authors = authors_seconds * scale
    return {"paper_epochs": paper_epochs, "authors_seconds": authors,
            "ratio_if_rest_fixed": authors / (train * scale + other),
            "ratio_if_rest_scales": authors / (ours_seconds * scale)}


def lever_runs(cfg_for, names, repeats: int) -> dict:
    """Ours with each lever set, alternating, `repeats` times: per set a list of (end-to-end s, per-phase)."""
    out: dict = {n: [] for n in names}
    for r in range(repeats):
        for name in names:
            cfg = cfg_for(f"{name}-{r}", LEVERS[name])
            t0 = time.perf_counter()
            phases = ours(cfg)
            out[name].append({"seconds": time.perf_counter() - t0, "phases": phases, "load": os.getloadavg()})
            print(name, r, json.dumps(out[name][-1]), flush=True)
    return out


def main() -> None:
    from support.fusion import make_shards, tiny_config

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs-per-phase", type=int, default=2)
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "_work" / "fusion"))
    ap.add_argument("--levers", default="", help="comma-separated lever sets of LEVERS to run as well")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    work = Path(args.work)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    shards = make_shards(work, n=args.n, size=args.size)
    k = args.epochs_per_phase
    sched = [f"train.epochs={3 * k}", f"fusion.curriculum.ramp_start={k}", f"fusion.curriculum.ramp_end={2 * k}",
             f"fusion.curriculum.phases=[{{start_epoch: 0, train_text_encoder: false}}, {{start_epoch: {k}}},"
             f" {{start_epoch: {2 * k}, train_image_encoder: false, train_text_encoder: false}}]"]
    cfg = tiny_config(shards, work / "runs", "bench", sched + list(args.overrides))
    classes = json.loads((shards / "manifest.json").read_text())["classes"]

    t0 = time.perf_counter()
    theirs = authors_loop(cfg, classes)
    t_theirs = time.perf_counter() - t0
    t0 = time.perf_counter()
    mine = ours(cfg)
    t_ours = time.perf_counter() - t0
    out = {"authors_loop_seconds": t_theirs, "ours_seconds": t_ours, "speedup": t_theirs / t_ours,
           "phases": {p: {"authors_samples_per_s": theirs[p]["samples"] / theirs[p]["seconds"],
                          "ours_samples_per_s": mine[p]["samples"] / mine[p]["seconds"],
                          "authors_seconds": theirs[p]["seconds"], "ours_seconds": mine[p]["seconds"]}
                      for p in sorted(theirs)},
           "model": {"image": cfg.fusion.model.image_encoder.name, "text": cfg.fusion.model.text_encoder.name},
           "n": args.n, "size": args.size, "epochs": cfg.train.epochs, "load": os.getloadavg()}
    out["paper_schedule"] = extrapolate(t_theirs, t_ours, mine, cfg.train.epochs)
    if args.levers:
        def cfg_for(name, extra):
            return tiny_config(shards, work / "runs", f"lever-{name}", sched + list(args.overrides) + extra)

        runs = lever_runs(cfg_for, args.levers.split(","), args.repeats)
        out["levers"] = {}
        for name, recs in runs.items():
            best = min(recs, key=lambda rec: rec["seconds"])
            both = [rec["phases"][1]["samples"] / rec["phases"][1]["seconds"] for rec in recs if 1 in rec["phases"]]
            out["levers"][name] = {"runs": recs, "both_train_samples_per_s": both,
                                   "paper_schedule": extrapolate(t_theirs, best["seconds"], best["phases"],
                                                                 cfg.train.epochs)}
    (work / "result.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

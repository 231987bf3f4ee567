"""The one-command pipeline: every stage of the paper, in order, each skipped when its output is up to date.

    synth -> shards build -> finetune-vlm -> describe -> train (fusion) -> metrics      (`mmlnb-dist demo`)
    finetune-vlm -> describe -> train, in a search's shared cache                       (the `vlm-fusion` trial)

The VLM is fine-tuned on the train split's pairs only, so the descriptions of validation and test patches
come from a model that never saw them (the fusion stage then trains on generated, not reference, text).

Each stage records a fingerprint of what it was built from (its config sections and its input's digest) in
a hidden file beside its output, `.<output name>.stage.json` (beside, not inside: stages such as the shard
builder replace their output folder whole). A rerun skips a stage whose output carries the same fingerprint,
so an interrupted run continues where it stopped, a changed setting reruns only the stages it reaches, and
search trials that share a setting share the stage's output.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .config import Config
from .core.distributed import DistEnv, barrier, init_engine_process_group
from .core.errors import UserError
from .core.recipe import Report
from .core.recipe import run as run_recipe
from .data.shardset import ShardSet
from .recipes import RECIPES, recipe_class

log = logging.getLogger(__name__)


def stage_file(out: Path) -> Path:
    return out.parent / f".{out.name}.stage.json"


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _read_stage(out: Path) -> Dict[str, Any]:
    try:
        return json.loads(stage_file(out).read_text())
    except (OSError, ValueError):
        return {}


def _write_stage(out: Path, fp: str, status: str, info: Dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = stage_file(out).with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": fp, "status": status, **info}, indent=2, default=str))
    tmp.replace(stage_file(out))


@dataclass
class StageResult:
    name: str
    output: Path
    fingerprint: str
    skipped: bool
    seconds: float
    info: Dict[str, Any] = field(default_factory=dict)


def run_stage(name: str, out: Path, fp: str, work: Callable[[bool], Dict[str, Any]],
              say: Callable[[str], None] = log.info, env: Optional[DistEnv] = None) -> StageResult:
    """Run `work(resume)` unless `out` already holds this fingerprint as done.

    - done with this fingerprint: skipped;
    - started with this fingerprint and interrupted: `work(resume=True)` continues it;
    - built by the pipeline from other inputs: the stale output is removed and the stage runs afresh;
    - a folder the pipeline did not make: refused, never deleted.
    Under a launcher every rank calls it (the work is collective); rank 0 alone writes the records.
    """
    env = env or DistEnv()
    state = _read_stage(out)
    barrier(env)  # every rank has read the record before rank 0 changes it
    if state.get("fingerprint") == fp and state.get("status") == "done":
        say(f"{name}: up to date in {out} (fingerprint {fp}): skipped")
        return StageResult(name, out, fp, True, 0.0, state)
    resume = state.get("fingerprint") == fp and state.get("status") == "running"
    if out.exists() and not resume and not state and any(out.iterdir()):
        raise UserError(f"{name}: {out} exists and was not made by this pipeline; move it away or point the "
                        f"config elsewhere")
    if env.is_main:
        if out.exists() and not resume:
            if state:
                say(f"{name}: inputs or settings changed since {out} was built: rebuilding it")
            shutil.rmtree(out)
        _write_stage(out, fp, "running", {})
    barrier(env)
    say(f"{name}: {'resuming' if resume else 'running'} -> {out}")
    t0 = time.time()
    info = work(resume) or {}
    if env.is_main:
        _write_stage(out, fp, "done", info)
    barrier(env)
    secs = time.time() - t0
    say(f"{name}: done in {secs:.1f}s")
    return StageResult(name, out, fp, False, secs, info)


def existing_shards(path: Path) -> StageResult:
    """A shard set made elsewhere, as the input of later stages (its fingerprint is its manifest's digest)."""
    shards = ShardSet.open(path)
    return StageResult("input", shards.root, shards.digest[:16], True, 0.0)


# ---------------------------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------------------------

def stage_synth(cfg: Config) -> StageResult:
    """The synthetic source set of `data.synth.task`: class folders (single) or a pairs CSV (multilabel)."""
    from .data.synthetic import make_synthetic_dataset
    from .data.synthetic_multilabel import make_multilabel_dataset

    s = cfg.data.synth
    out = Path(cfg.data.synth_dir)

    def work(resume: bool) -> Dict[str, Any]:
        if s.task == "multilabel":
            summary = make_multilabel_dataset(out, n=s.n, size=s.size, n_slides=s.n_slides,
                                              omit_rate=s.caption_omit_rate, wrong_rate=s.caption_wrong_rate,
                                              faint_rate=s.faint_rate, seed=s.seed, progress=True)
        else:
            summary = make_synthetic_dataset(out, n=s.n, size=s.size, n_slides=s.n_slides,
                                             noisy_description_rate=s.noisy_description_rate, seed=s.seed,
                                             progress=True)
        return {"summary": summary}

    return run_stage("synth", out, fingerprint("synth", s.model_dump()), work)


def stage_shards(cfg: Config, source: StageResult) -> StageResult:
    """Shards of the source set: class folders, or (`data.synth.task=multilabel`) its pairs CSV."""
    from .data.build import build_shards
    from .data.collect import collect_samples
    from .data.multilabel import build_multilabel_shards

    out = Path(cfg.data.shards)
    multilabel = cfg.data.synth.task == "multilabel"
    fp = fingerprint("shards", source.fingerprint, cfg.data.build.model_dump(),
                     cfg.data.multilabel.model_dump() if multilabel else cfg.data.classes)

    def work(resume: bool) -> Dict[str, Any]:
        if multilabel:
            manifest = build_multilabel_shards(source.output / "pairs.csv", out, cfg.data.build, cfg.data.multilabel)
            return {"label_counts": {k: v.get("label_counts") for k, v in manifest["splits"].items()}}
        samples = collect_samples(source.output, cfg.data.classes)
        manifest = build_shards(samples, out, cfg.data.build, cfg.data.classes,
                                provenance={"input": str(source.output)})
        return {"counts": {k: v["class_counts"] for k, v in manifest["splits"].items()}}

    return run_stage("shards", out, fp, work)


def stage_finetune_vlm(cfg: Config, shards: StageResult, env: Optional[DistEnv] = None,
                       cache_root: Optional[Path] = None) -> StageResult:
    """Stage 1a: LoRA fine-tuning of the VLM on the image-description pairs of the train split. With
    `cache_root`, the run lives in `<cache_root>/vlm/<fingerprint>` (shared by runs with equal settings)."""
    cfg = cfg.model_copy(deep=True)
    cfg.vlm.pairs = shards.output
    fp = fingerprint("finetune-vlm", shards.fingerprint, cfg.run.seed, cfg.vlm.model_dump(exclude={"generation"}),
                     cfg.distributed.model_dump())
    if cache_root is not None:
        cfg.run.output_dir, cfg.run.name = Path(cache_root) / "vlm", fp
    else:
        cfg.run.name = f"{cfg.run.name}-vlm"

    def work(resume: bool) -> Dict[str, Any]:
        cfg.run.resume = resume
        result = run_recipe(recipe_class("vlm"), cfg, env)
        return {"adapter_dir": result["adapter_dir"], "base_model": result["base_model"],
                "losses": {k: v for k, v in result.items() if k.endswith("loss")}}

    return run_stage("finetune-vlm", Path(cfg.run.dir), fp, work, env=env)


def stage_describe(cfg: Config, vlm: StageResult, shards: StageResult, env: Optional[DistEnv] = None,
                   cache_root: Optional[Path] = None) -> StageResult:
    """Stage 1b: the fine-tuned VLM describes every patch; the output is a new shard set with `txt`."""
    from .recipes.vlm.describe import run_describe

    fp = fingerprint("describe", vlm.fingerprint, shards.fingerprint, cfg.vlm.prompt, cfg.vlm.generation.model_dump())
    out = Path(cache_root) / "described" / fp if cache_root is not None else Path(f"{shards.output}-described")

    def work(resume: bool) -> Dict[str, Any]:  # describe resumes from its own progress files
        result = run_describe(cfg, vlm=cfg.vlm.model, adapter=vlm.info["adapter_dir"], shards_in=shards.output,
                              out=out, env=env, progress=cache_root is None)
        return {"num_samples": result.get("num_samples"), "quality": result.get("quality")}

    return run_stage("describe", out, fp, work, env=env)


def stage_train(cfg: Config, shards: StageResult) -> StageResult:
    """Stage 2: the training recipe (`train.recipe`, the fusion classifier) on `shards.output`."""
    cfg = cfg.model_copy(deep=True)
    cfg.data.shards = shards.output
    cfg.run.name = f"{cfg.run.name}-{cfg.train.recipe}"
    recipe_section = getattr(cfg, RECIPES[cfg.train.recipe].section)
    fp = fingerprint("train", shards.fingerprint, cfg.run.seed, recipe_section.model_dump(), cfg.train.model_dump(),
                     cfg.distributed.model_dump(), cfg.data.loader.model_dump())

    def work(resume: bool) -> Dict[str, Any]:
        cfg.run.resume = resume
        result = run_recipe(recipe_class(cfg.train.recipe), cfg)
        return {"metrics": {k: v for k, v in result.items() if isinstance(v, (int, float, str))}}

    return run_stage("train", Path(cfg.run.dir), fp, work)


# ---------------------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------------------

def run_demo(cfg: Config) -> List[StageResult]:
    """The embedded-default pipeline end to end; returns what each stage did.

    The process group is created once here and lives as long as the process: DeepSpeed caches its groups at
    module level, so a group destroyed and re-created between two engines in one process breaks the second.
    """
    init_engine_process_group(DistEnv.from_environment(), cfg.distributed)
    synth = stage_synth(cfg)
    shards = stage_shards(cfg, synth)
    if not RECIPES[cfg.train.recipe].needs_descriptions:  # the CLIP recipe trains on the captions
        return [synth, shards, stage_train(cfg, shards)]
    vlm = stage_finetune_vlm(cfg, shards)
    described = stage_describe(cfg, vlm, shards)
    train = stage_train(cfg, described)
    return [synth, shards, vlm, described, train]


def run_vlm_fusion(cfg: Config, env: Optional[DistEnv] = None, report: Optional[Report] = None) -> Dict[str, Any]:
    """Fine-tune the VLM, describe `data.shards`, train the fusion classifier into the run folder.

    The adapter and the descriptions live in the shared cache (`run.cache_dir`, which a search points all its
    trials at; default `<run dir>/cache`) under their stage fingerprints, so a trial whose VLM settings already
    ran reuses them and goes straight to training (which is the trial's own work: never skipped)."""
    env = env or DistEnv.from_environment()
    cache = Path(cfg.run.cache_dir or cfg.run.dir / "cache")
    shards = existing_shards(cfg.data.shards)
    vlm = stage_finetune_vlm(cfg, shards, env, cache_root=cache)
    described = stage_describe(cfg, vlm, shards, env, cache_root=cache)
    train_cfg = cfg.model_copy(deep=True)
    train_cfg.data.shards = described.output
    result = run_recipe(recipe_class(cfg.train.recipe), train_cfg, env, report)
    return {**result, "descriptions": str(described.output), "cache/description_hit": float(described.skipped),
            "vlm/val_loss": vlm.info["losses"].get("val/loss")}


PAPER_COLUMNS = [("accuracy", "Acc"), ("balanced_accuracy", "BAcc"), ("kappa", "Kappa"),
                 ("f1_weighted", "F1"), ("precision_weighted", "Prec"), ("recall_weighted", "Rec"),
                 ("auroc", "AUROC")]


def paper_table(metrics: Dict[str, Any], split: str = "val") -> str:
    """The paper's Table 1 columns (in %) for one split, plus the ordinal quadratic kappa."""
    head = " | ".join(f"{name:>6}" for _, name in PAPER_COLUMNS) + " | QWK(ord)"
    row = " | ".join(f"{100 * metrics[f'{split}/{key}']:6.2f}" for key, _ in PAPER_COLUMNS)
    row += f" | {100 * metrics[f'{split}/quadratic_kappa']:8.2f}"
    return f"{split} split (best checkpoint), %:\n{head}\n{row}\n" \
        "Kappa is unweighted Cohen's kappa; QWK(ord) is quadratic-weighted on the ordinal order UD < PD < D."


def metrics_table(cfg: Config, metrics: Dict[str, Any]) -> str:
    """The recipe's table columns (its variants module's METRICS) for each split in `metrics`, best checkpoint."""
    import importlib

    spec = RECIPES[cfg.train.recipe]
    columns = list(importlib.import_module(spec.variants).METRICS) if spec.variants else sorted(
        {k.split("/", 1)[1] for k in metrics if k.startswith("val/")})
    splits = [s for s in ("val", "test") if f"{s}/{columns[0]}" in metrics]
    width = max(len(c) for c in columns)
    lines = [f"best checkpoint ({cfg.train.best_metric} on val):", f"{'':<{width}} " + " ".join(f"{s:>8}" for s in splits)]
    for c in columns:
        lines.append(f"{c:<{width}} " + " ".join(f"{float(metrics.get(f'{s}/{c}', float('nan'))):8.4f}" for s in splits))
    return "\n".join(lines)

"""The data and training stages, each planned as (output, fingerprint, work) and run by `stages.run_stage`.

    synth | tile | --patches  ->  shards  ->  finetune-vlm  ->  describe  ->  train

The VLM is fine-tuned on the train split's pairs only, so the descriptions of validation and test patches
come from a model that never saw them (the fusion stage then trains on generated, not reference, text).
Shards without descriptions (tiled slides) fine-tune on `vlm.pairs` instead.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..config import Config
from ..core.distributed import DistEnv
from ..core.errors import UserError
from ..core.recipe import TRAIN_CADENCE
from ..core.recipe import run as run_recipe
from ..data.shardset import ShardSet
from ..data.skipped import skipped_summary
from ..recipes import RECIPES, recipe_class
from ..recipes.vlm.config import vlm_run_name
from .changes import stage_settings
from .inputs import files_fingerprint, local_inputs
from .stages import (SKIPPED_IMAGES, PlannedStage, StageResult, fingerprint, rank0_stage, read_stage, run_planned,
                     stopped_reading_elsewhere)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------
# Sources: the synthetic generator, tiled slides, or existing shards
# ---------------------------------------------------------------------------------------------------------

def plan_synth(cfg: Config) -> PlannedStage:
    """The synthetic source set of `data.synth.task`: class folders (single) or a pairs CSV (multilabel)."""
    from ..data.synth_set import write_synth_set

    from ..data.synthetic import CLASSES

    s = cfg.data.synth
    out = Path(cfg.data.synth_dir)
    classes = list(cfg.data.classes)

    def work(resume: bool) -> Dict[str, Any]:
        return {"summary": write_synth_set(out, s, "data.synth_dir", classes)}

    # The painted classes (data.classes) are fingerprinted unless they are the generator's own three, so that a set
    # synthesised before they were counts as up to date.
    painted = [classes] if s.task == "single" and classes != list(CLASSES) else []
    return rank0_stage(cfg.distributed, "synth", out, fingerprint("synth", s.model_dump(), *painted), work)


def stage_synth(cfg: Config, env: Optional[DistEnv] = None) -> StageResult:
    return run_planned(plan_synth(cfg), env)


def plan_tile(cfg: Config, slides: Path, labels: Path) -> PlannedStage:
    """Whole-slide images -> the shard set `data.shards` (the tiling behind `mmlnb-dist slides tile`)."""
    from ..slides.identity import tiling_inputs_identity
    from ..slides.slide_task import TILING_VERSION
    from ..slides.tiler import tile_slides

    out = Path(cfg.data.shards)
    # Every file tiling reads: a CSV's slides live outside it, and cfg.slides holds only the mask folder's and
    # stain target's paths, so an edited mask or a slide replaced in place would otherwise reuse stale tiles.
    fp = fingerprint("tile", files_fingerprint(slides), files_fingerprint(labels), cfg.slides.model_dump(),
                     cfg.data.build.model_dump(), cfg.data.classes, tiling_inputs_identity(slides, cfg.slides),
                     TILING_VERSION)  # tiles staged by older tiling code are not reused either

    def work(resume: bool) -> Dict[str, Any]:
        report = tile_slides(cfg.slides, cfg.data.build, slides, labels, out, classes=cfg.data.classes,
                             progress=True)
        if report.manifest is None:
            raise UserError(f"--slides {slides}: no tile was kept from any slide (QC pictures in {report.qc_dir}); "
                            f"check --labels {labels} and the slides.* tissue settings")
        for p in report.problems:
            log.warning("slide %s: %s (left out; see %s)", p.get("slide_id"), p.get("status"), report.qc_dir)
        return {"slides": len(report.results) - len(report.problems), "problems": report.problems,
                "tiles": sum(r.get("kept", 0) for r in report.results), "qc_dir": str(report.qc_dir)}

    return rank0_stage(cfg.distributed, "tile", out, fp, work)


def plan_shards(cfg: Config, source: StageResult) -> PlannedStage:
    """Shards of the source set: class folders or a CSV (`collect_samples`), or (`data.synth.task=multilabel`)
    the synthetic pairs CSV."""
    from ..data.build import build_shards
    from ..data.collect import collect_samples
    from ..data.multilabel import build_multilabel_shards

    out = Path(cfg.data.shards)
    multilabel = cfg.data.synth.task == "multilabel" and source.name == "synth"
    fp = fingerprint("shards", source.fingerprint, cfg.data.build.model_dump(),
                     cfg.data.multilabel.model_dump() if multilabel else cfg.data.classes)

    def work(resume: bool) -> Dict[str, Any]:
        if multilabel:
            manifest = build_multilabel_shards(source.output / "pairs.csv", out, cfg.data.build, cfg.data.multilabel)
            return {"label_counts": {k: v.get("label_counts") for k, v in manifest["splits"].items()}}
        given = "--patches" if source.name == "patches" else None  # (errors name the flag of a user-given input)
        samples = collect_samples(source.output, cfg.data.classes, flag=given)
        manifest = build_shards(samples, out, cfg.data.build, cfg.data.classes,
                                provenance={"input": str(source.output)})
        if manifest["skipped"]:  # under data.build.max_skipped_rate: the build went on without them
            log.warning("shards: %s", skipped_summary(manifest["skipped"]))
        return {"counts": {k: v["class_counts"] for k, v in manifest["splits"].items()},
                SKIPPED_IMAGES: skipped_summary(manifest["skipped"]) if manifest["skipped"] else None}

    labels = {"data.multilabel": cfg.data.multilabel.model_dump()} if multilabel else {"data.classes": cfg.data.classes}
    return dataclasses.replace(rank0_stage(cfg.distributed, "shards", out, fp, work), settings=stage_settings(
        {"data.build": cfg.data.build.model_dump(), **labels}, {source.name: source.fingerprint}))


def stage_shards(cfg: Config, source: StageResult, env: Optional[DistEnv] = None) -> StageResult:
    return run_planned(plan_shards(cfg, source), env)


def plan_verify(cfg: Config) -> PlannedStage:
    """An existing shard set (`data.shards`, made elsewhere) checked once per manifest digest and folder: the
    record lives in `<run.output_dir>/verified/<digest and folder>`, never beside the user's folder. A copy or a
    moved set is checked where it now is (its own bytes; the later stages read it there); the stage's fingerprint
    stays the digest. The stage's `info["shards"]` is the shard set the later stages read."""
    from ..data.verify import verify_shards

    shards = ShardSet.open(cfg.data.shards)
    out = Path(cfg.run.output_dir) / "verified" / fingerprint(shards.digest, str(shards.root.resolve()))

    def work(resume: bool) -> Dict[str, Any]:
        report = verify_shards(shards.root, progress=True)
        if not report.ok:
            raise UserError(f"data.shards {shards.root}: {len(report.problems)} problem(s), first: "
                            f"{report.problems[0]}; rebuild it (`mmlnb-dist shards build`) or fix the shard")
        out.mkdir(parents=True, exist_ok=True)
        return {"shards": str(shards.root), "counts": report.counts}

    return rank0_stage(cfg.distributed, "shards", out, shards.digest[:16], work)


def shard_set_of(result: StageResult) -> StageResult:
    """The shard set a stage produced (a verification stage names it in its record; others are it)."""
    if "shards" in result.info:
        return StageResult(result.name, Path(result.info["shards"]), result.fingerprint, result.skipped,
                           result.seconds, result.info, result.status)
    return result


def by_content(shards: StageResult) -> StageResult:
    """The shard set as the later stages' input: fingerprinted by what it holds (its manifest's digest, as a
    verified set is), not by how this run made it, so the same set built here, verified or moved keeps them."""
    digest = ShardSet.open(shards.output).digest[:16]
    return shards if shards.fingerprint == digest else \
        StageResult(shards.name, shards.output, digest, shards.skipped, shards.seconds, shards.info, shards.status)


# ---------------------------------------------------------------------------------------------------------
# MMLNB stage 1 (VLM) and stage 2 (the training recipe)
# ---------------------------------------------------------------------------------------------------------

def _is_pairs_set(path: Path) -> bool:
    return (Path(path) / "manifest.json").is_file() and ShardSet.open(path).has_descriptions


def _train_described(path: Path) -> Tuple[Optional[int], int]:
    """(train samples carrying a description, or None where the manifest predates the count; train samples)."""
    shard_set = ShardSet.open(path)
    return shard_set.num_described("train"), shard_set.num_samples("train")


def pairs_for(cfg: Config, shards: StageResult) -> StageResult:
    """What the VLM fine-tunes on: the pipeline's shards when they carry descriptions (the described ones; the
    describe stage gives the others theirs), else `vlm.pairs`. Shards described only in part are said in a warning
    with their counts, naming a `vlm.pairs` set left unused: they took its place without a word, and a VLM
    fine-tuned on a handful of pairs looked like one fine-tuned on the set the config names."""
    pairs = Path(cfg.vlm.pairs)
    other = pairs.resolve() != shards.output.resolve() and _is_pairs_set(pairs)
    if _is_pairs_set(shards.output):
        described, total = _train_described(shards.output)
        if described is not None and described < total:
            unused = (f"; vlm.pairs={pairs} ({ShardSet.open(pairs).num_samples('train')} train pairs) is not used: "
                      f"the pipeline fine-tunes on its own shards when they carry descriptions" if other else "")
            log.warning("finetune-vlm: only %d of %d train patches of %s carry a description: the VLM fine-tunes on "
                        "those %d (the describe stage describes every patch)%s", described, total, shards.output,
                        described, unused)
        return shards
    if other:
        pair_set = ShardSet.open(pairs)
        log.info("finetune-vlm: %s carries no descriptions; the VLM fine-tunes on the pairs of vlm.pairs=%s (%d train "
                 "pairs)", shards.output, pairs, pair_set.num_samples("train"))
        return StageResult("pairs", pairs, pair_set.digest[:16], True, 0.0, status="input")
    raise UserError(f"finetune-vlm: the shards {shards.output} carry no descriptions to fine-tune the VLM on, and "
                    f"vlm.pairs={pairs} is not a shard set of image-description pairs")


def require_pairs(cfg: Config, source: str, path: Optional[Path] = None) -> None:
    """Stop before any stage when the VLM will have no image-description pairs to fine-tune on: the source
    (`synth`, `slides`, `patches` at `path`, or the shard set at `data.shards`) carries no descriptions and
    `vlm.pairs` is no shard set of pairs. Tiling or building first would only defer the error by hours."""
    if source == "synth" or _is_pairs_set(cfg.vlm.pairs):  # the generator writes reference descriptions
        return
    if source == "patches":
        from ..data.collect import collect_samples

        if any(s.description for s in collect_samples(path, cfg.data.classes, flag="--patches")):
            return
        why = f"the patches in {path} carry no descriptions"
    elif source == "slides":
        why = "tiled slides carry no descriptions"
    else:
        if not (Path(cfg.data.shards) / "manifest.json").is_file() or _is_pairs_set(cfg.data.shards):
            return  # no shard set: the pipeline names that problem itself
        why = f"the shard set data.shards={cfg.data.shards} carries no descriptions"
    raise UserError(
        f"finetune-vlm: {why}, and vlm.pairs={cfg.vlm.pairs} is not a shard set of image-description pairs, so the "
        f"VLM would have nothing to fine-tune on; nothing was run. Give the patches their reference descriptions "
        f"(a 'description' column in the labels CSV, or a descriptions.jsonl of {{\"file\", \"description\"}} lines "
        f"beside them), point vlm.pairs at a shard set of pairs (`mmlnb-dist shards build --input PATCHES "
        f"--descriptions JSONL --out DIR`), or let the base VLM describe the patches without fine-tuning "
        f"(vlm.finetune=false)")


def base_vlm_stage(cfg: Config) -> StageResult:
    """The base VLM as the input of `stage_describe`: no adapter; as fingerprint its identity (model name and the
    tiny model's seed and vision tower) and what else decides what it writes (the image resolution it sees, the
    precision it runs in), so its descriptions never share a folder with the fine-tuned model's, nor with its own
    at other settings."""
    v = cfg.vlm
    identity = fingerprint("base-vlm", v.model, v.tiny_seed, v.tiny_vision, v.min_pixels, v.max_pixels,
                           cfg.distributed.precision, *local_inputs(v, "vlm."))
    return StageResult("base-vlm", Path(str(v.model)), identity, True, 0.0, {"adapter_dir": None}, status="input")


FINETUNE_CADENCE = {"generation", "log_every", "eval_every", "checkpoint_every", "cache_dir"}
"""`vlm` settings that do not change the fine-tuned adapter (describe's generation; how often it logs, validates and
checkpoints; where the tiny model is cached): a rerun that changes only these resumes the fine-tune instead of
deleting it (`FinetuneVLMRecipe.resume_may_change` allows them). Under `vlm.keep_best` the validations pick the
adapter, so `eval_every` counts; `keep_best` is left out when off, so fingerprints from before it existed hold."""


def finetune_settings(vlm: Any) -> Dict[str, Any]:
    """The `vlm` settings that decide the fine-tuned adapter (fingerprinted). Not `vlm.pairs`, the folder the pairs
    lie in: the stage's input fingerprint (a shard set's digest) says what they are, so a moved set keeps its
    adapter."""
    if vlm.keep_best:
        return vlm.model_dump(exclude=(FINETUNE_CADENCE - {"eval_every"}) | {"pairs"})
    return vlm.model_dump(exclude=FINETUNE_CADENCE | {"keep_best", "pairs"})


def plan_finetune_vlm(cfg: Config, shards: StageResult, env: Optional[DistEnv] = None,
                      cache_root: Optional[Path] = None) -> PlannedStage:
    """Stage 1a: LoRA fine-tuning of the VLM on the image-description pairs of the train split. With
    `cache_root`, the run lives in `<cache_root>/vlm/<fingerprint>` (shared by runs with equal settings: one builds
    it while the others wait for it)."""
    cfg = cfg.model_copy(deep=True)
    cfg.vlm.pairs = shards.output
    settings, dist = finetune_settings(cfg.vlm), cfg.distributed.results_dump()
    local = local_inputs(cfg.vlm, "vlm.")
    fp = fingerprint("finetune-vlm", shards.fingerprint, cfg.run.seed, settings, dist, *local)
    # an adapter fine-tuned before the fingerprint left out the pairs' folder is kept while they stay there
    legacy = fingerprint("finetune-vlm", shards.fingerprint, cfg.run.seed, {**settings, "pairs": cfg.vlm.pairs}, dist,
                         *local)
    if cache_root is not None:
        if read_stage(Path(cache_root) / "vlm" / legacy).get("fingerprint") == legacy or \
                stopped_reading_elsewhere(Path(cache_root) / "vlm" / fp, "vlm.pairs", shards.output):
            fp = legacy
        cfg.run.output_dir, cfg.run.name = Path(cache_root) / "vlm", fp
    else:
        cfg.run.name = vlm_run_name(cfg.run.name)
        if read_stage(Path(cfg.run.dir)).get("fingerprint") == legacy or \
                stopped_reading_elsewhere(Path(cfg.run.dir), "vlm.pairs", shards.output):
            fp = legacy

    def work(resume: bool) -> Dict[str, Any]:
        cfg.run.resume = resume
        result = run_recipe(recipe_class("vlm"), cfg, env)
        return {"adapter_dir": result["adapter_dir"], "base_model": result["base_model"],
                "base_model_seconds": result.get("base_model_seconds", 0.0),
                "losses": {k: v for k, v in result.items() if k.endswith("loss")}}

    named = stage_settings({"run.seed": cfg.run.seed, "vlm": settings, "distributed": dist},
                           {"shards": shards.fingerprint, **dict(local)})
    return PlannedStage("finetune-vlm", Path(cfg.run.dir), fp, work, shared=cache_root is not None, settings=named)


def stage_finetune_vlm(cfg: Config, shards: StageResult, env: Optional[DistEnv] = None,
                       cache_root: Optional[Path] = None) -> StageResult:
    return run_planned(plan_finetune_vlm(cfg, shards, env, cache_root), env)


def plan_describe(cfg: Config, vlm: StageResult, shards: StageResult, env: Optional[DistEnv] = None,
                  cache_root: Optional[Path] = None) -> PlannedStage:
    """Stage 1b: the fine-tuned VLM describes every patch; the output is a new shard set with `txt`."""
    from ..recipes.vlm.describe import described_beside, run_describe

    # Not the batch size: a description does not depend on its batch (`describe.RESUME_MAY_CHANGE`), and a describe
    # out of memory is told to lower it, so a rerun with a smaller one continues instead of describing all again.
    generation = cfg.vlm.generation.model_dump(exclude={"batch_size"})
    fp = fingerprint("describe", vlm.fingerprint, shards.fingerprint, cfg.vlm.prompt, generation)
    # a describe recorded while the fingerprint held the batch size keeps its record (not described again on upgrade)
    legacy = fingerprint("describe", vlm.fingerprint, shards.fingerprint, cfg.vlm.prompt,
                         cfg.vlm.generation.model_dump())
    beside = described_beside(shards.output)
    if read_stage(Path(cache_root) / "described" / legacy if cache_root is not None else beside).get(
            "fingerprint") == legacy:
        fp = legacy
    out = Path(cache_root) / "described" / fp if cache_root is not None else beside

    def work(resume: bool) -> Dict[str, Any]:  # describe resumes from its own progress files
        result = run_describe(cfg, vlm=cfg.vlm.model, adapter=vlm.info["adapter_dir"], shards_in=shards.output,
                              out=out, env=env, progress=cache_root is None)
        return {"num_samples": result.get("num_samples"), "quality": result.get("quality")}

    named = stage_settings({"vlm.prompt": cfg.vlm.prompt, "vlm.generation": generation},
                           {vlm.name: vlm.fingerprint, "shards": shards.fingerprint})
    return PlannedStage("describe", out, fp, work, shared=cache_root is not None, settings=named)


def stage_describe(cfg: Config, vlm: StageResult, shards: StageResult, env: Optional[DistEnv] = None,
                   cache_root: Optional[Path] = None) -> StageResult:
    return run_planned(plan_describe(cfg, vlm, shards, env, cache_root), env)


def plan_train(cfg: Config, shards: StageResult, env: Optional[DistEnv] = None) -> PlannedStage:
    """Stage 2: the training recipe (`train.recipe`, the fusion classifier) on `shards.output`. Registering is
    the pipeline's own stage, so the recipe's end-of-training registration is off here."""
    from ..core.tracking.journal import recorded_run

    cfg = cfg.model_copy(deep=True)
    cfg.data.shards = shards.output
    cfg.run.name = f"{cfg.run.name}-{cfg.train.recipe}"
    cfg.tracking.register_name = None
    section = RECIPES[cfg.train.recipe].section
    recipe_section = getattr(cfg, section)
    local = local_inputs(recipe_section, f"{section}.")
    train_dump, loader_dump = (cfg.train.model_dump(exclude=TRAIN_CADENCE["train"]),
                               cfg.data.loader.model_dump(exclude=TRAIN_CADENCE["data.loader"]))
    dist = cfg.distributed.results_dump()
    fp = fingerprint("train", shards.fingerprint, cfg.run.seed, recipe_section.model_dump(), train_dump, dist,
                     loader_dump, *local)
    # a stage recorded while the fingerprint held the cadence settings keeps its record (no retraining on upgrade)
    legacy = fingerprint("train", shards.fingerprint, cfg.run.seed, recipe_section.model_dump(),
                         cfg.train.model_dump(), dist, cfg.data.loader.model_dump(), *local)
    run_dir, held = Path(cfg.run.dir), read_stage(Path(cfg.run.dir)).get("fingerprint")
    if held in (legacy, fingerprint(legacy, str(shards.output))):
        fp = legacy
    placed = fingerprint(fp, str(shards.output))  # a run stopped on its shards elsewhere starts again (placed)
    if held == placed or stopped_reading_elsewhere(run_dir, "data.shards", shards.output):
        fp = placed

    def work(resume: bool) -> Dict[str, Any]:
        cfg.run.resume = resume
        result = run_recipe(recipe_class(cfg.train.recipe), cfg, env)
        run_id = recorded_run(Path(cfg.run.dir)).get("run_id")
        return {"metrics": {k: v for k, v in result.items() if isinstance(v, (int, float, str))},
                "run_dir": str(cfg.run.dir), "mlflow_run_id": run_id, "data_shards": str(shards.output)}

    settings = stage_settings({"run.seed": cfg.run.seed, section: recipe_section.model_dump(), "train": train_dump,
                               "distributed": dist, "data.loader": loader_dump},
                              {"shards": shards.fingerprint, **dict(local)})
    return PlannedStage("train", Path(cfg.run.dir), fp, work, settings=settings)


def stage_train(cfg: Config, shards: StageResult, env: Optional[DistEnv] = None) -> StageResult:
    return run_planned(plan_train(cfg, shards, env), env)

"""The pipelines: `run_pipeline` (the `pipeline` and `demo` commands) and `run_vlm_fusion` (a search trial).

    [synth | tile | --patches | data.shards] -> shards -> finetune-vlm -> describe -> train -> evaluate -> register

`first` / `last` (`--from` / `--until`) pick a slice: the stages before it are taken as an earlier run left
them (their outputs must be complete), the stages after it do not run. Under a launcher every rank calls
`run_pipeline`: finetune-vlm, describe, train and evaluate run on every rank, the others on rank 0 while the
other ranks wait (`stages.run_stage`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config import Config, save_config
from ..core.distributed import DistEnv, init_engine_process_group
from ..core.engine import check_precision
from ..core.errors import ConfigError, UserError
from ..core.files import refuse_file_in_the_way
from ..core.recipe import Report
from ..recipes import RECIPES, check_configs
from ..recipes.vlm.config import vlm_run_name
from . import finish, steps
from .inputs import given_input
from .stages import PlannedStage, StageResult, existing_shards, recorded, require_done, run_planned

log = logging.getLogger(__name__)

STAGES = ("synth", "tile", "shards", "finetune-vlm", "describe", "train", "evaluate", "register")
"""Every stage name, in order (`--from` / `--until` take these)."""

REPORT = "report.md"
"""The report of a run that reaches register; a slice stopping earlier writes `report-<from>-<until>.md`."""


@dataclass
class PipelineInputs:
    """Where the patches come from: at most one of these; none = the shard set at `data.shards`."""

    slides: Optional[Path] = None
    labels: Optional[Path] = None
    patches: Optional[Path] = None
    synthetic: bool = False


@dataclass
class PipelineRun:
    results: List[StageResult] = field(default_factory=list)
    evaluation: Optional[Dict[str, Any]] = None
    registration: Optional[Dict[str, Any]] = None
    report: Optional[str] = None
    predict: Optional[str] = None

    def stage(self, name: str) -> Optional[StageResult]:
        return next((r for r in self.results if r.name == name), None)


def stages_for(cfg: Config, inputs: PipelineInputs) -> List[str]:
    """The stages this config and these inputs run, in order."""
    given = [n for n, v in (("--slides", inputs.slides), ("--patches", inputs.patches),
                            ("--synthetic", inputs.synthetic)) if v]
    if len(given) > 1:
        raise UserError(f"{' and '.join(given)}: give one source of patches")
    if (inputs.slides is None) != (inputs.labels is None):
        raise UserError("--slides and --labels go together (the labels CSV has slide_id,label)")
    names = ["synth", "shards"] if inputs.synthetic else ["tile"] if inputs.slides else ["shards"]
    if RECIPES[cfg.train.recipe].needs_descriptions:
        names += ["finetune-vlm", "describe"] if cfg.vlm.finetune else ["describe"]
    return names + ["train", "evaluate", "register"]


def check_slice(names: List[str], first: Optional[str],
                last: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """`--from` / `--until` checked against this pipeline's stages; returns them with `shards` read as `tile` when
    the pipeline starts from slides (tiling writes the shard set)."""
    if "tile" in names:
        first, last = ("tile" if s == "shards" else s for s in (first, last))
    for flag, stage in (("--from", first), ("--until", last)):
        if stage is None:
            continue
        if stage not in STAGES:
            raise UserError(f"{flag} {stage}: no such stage; the stages are {', '.join(STAGES)}")
        if stage not in names:
            raise UserError(f"{flag} {stage}: not a stage of this pipeline (tile runs only with --slides, synth with "
                            f"--synthetic, the VLM stages for recipes that read descriptions); this one has "
                            f"{', '.join(names)}")
    if first and last and names.index(first) > names.index(last):
        raise UserError(f"--from {first} comes after --until {last}; the order is {', '.join(names)}")
    return first, last


PIPELINE_SECTIONS = ("run", "data", "train", "distributed", "tracking")
"""The shared config sections every pipeline reads (besides its recipe's, the VLM's and, with --slides, slides)."""


STAGE_SECTIONS = {"finetune-vlm": "vlm", "describe": "vlm", "tile": "slides"}
"""The section a stage reads besides the shared ones and the recipe's (in the order `read_sections` lists them)."""


def read_sections(cfg: Config, inputs: PipelineInputs) -> List[str]:
    """The config sections the stages of `stages_for(cfg, inputs)` read: the shared ones, `train.recipe`'s, and
    each planned stage's own (`STAGE_SECTIONS`: the VLM's for finetune-vlm and describe, which run when the recipe
    trains on descriptions; slides for tile, with --slides), derived from the stages so the two cannot drift."""
    names = stages_for(cfg, inputs)
    own = (section for stage, section in STAGE_SECTIONS.items() if stage in names)
    return list(dict.fromkeys([*PIPELINE_SECTIONS, RECIPES[cfg.train.recipe].section, *own]))


def refuse_unread_overrides(cfg: Config, inputs: PipelineInputs, overrides: Sequence[str]) -> None:
    """A command-line override of a section none of the pipeline's stages read (`fusion.*` or `vlm.*` for the
    CLIP recipe's, `slides.*` without --slides, `tune.*`) would change nothing: a `ConfigError` before any work,
    in the words `train` refuses them with, naming the keys and the sections the pipeline reads."""
    read = read_sections(cfg, inputs)
    unread = [k for k in (o.split("=", 1)[0].strip() for o in overrides)
              if k.split(".", 1)[0] in set(type(cfg).model_fields) - set(read)]
    if unread:
        with_slides = "" if "slides" in read else "; slides.* with --slides"
        raise ConfigError(f"the pipeline of train.recipe={cfg.train.recipe} never reads {', '.join(unread)}: these "
                          f"overrides would change nothing. Its settings are {', '.join(s + '.*' for s in read)}"
                          f"{with_slides} (or set train.recipe to the recipe they belong to)")


def stage_folders(cfg: Config, inputs: PipelineInputs, ran: Sequence[str]) -> Dict[str, Path]:
    """The folders the stages `ran` write (and the pipeline's own), by what places them."""
    folders = {"run.output_dir": Path(cfg.run.output_dir), "the pipeline's folder": finish.pipeline_dir(cfg)}
    if "synth" in ran:
        folders["data.synth_dir"] = Path(cfg.data.synth_dir)
    if ran[0] in ("synth", "tile", "shards") and (inputs.synthetic or inputs.slides or inputs.patches):
        folders["data.shards"] = Path(cfg.data.shards)
    if "finetune-vlm" in ran:
        folders["the VLM's run folder"] = Path(cfg.run.output_dir) / vlm_run_name(cfg.run.name)
    if "describe" in ran:  # where the describe stage writes (`plan_describe`): one rule, `.` and `..` resolved
        from ..recipes.vlm.describe import described_beside

        folders["the described shard set"] = described_beside(Path(cfg.data.shards))
    if "train" in ran:
        folders["the training run folder"] = Path(cfg.run.output_dir) / f"{cfg.run.name}-{cfg.train.recipe}"
    return folders


@dataclass
class PipelinePlan:
    """What `check_pipeline` let run: the pipeline's stages and the slice `names[start:stop + 1]` of them."""

    names: List[str]
    start: int
    stop: int


def check_pipeline(cfg: Config, inputs: PipelineInputs, first: Optional[str] = None, last: Optional[str] = None,
                   env: Optional[DistEnv] = None, overrides: Sequence[str] = ()) -> PipelinePlan:
    """Every refusal the pipeline makes before its first stage (its inputs, `--from` / `--until`, the `overrides`
    it would never read, what its stages would refuse at their start), made before anything is written: the
    command opens its log file only after this."""
    env = env or DistEnv.from_environment()
    names = stages_for(cfg, inputs)
    refuse_unread_overrides(cfg, inputs, overrides)
    first, last = check_slice(names, first, last)
    for flag, given in (("--slides", inputs.slides), ("--labels", inputs.labels), ("--patches", inputs.patches)):
        if given is not None and not Path(given).exists():
            raise UserError(f"{flag} {given}: not found")  # not by the first stage, after the log was opened
    if inputs.patches is not None:
        from ..data.collect import check_patch_source
        from ..data.shardset import ShardError

        try:
            check_patch_source(Path(inputs.patches))
        except ShardError as err:
            raise UserError(f"--patches {err}") from None
    refuse_inputs_of_another_task(cfg, inputs)
    start, stop = names.index(first or names[0]), names.index(last or names[-1])
    refuse_unregistrable_run_name(cfg, names[start:stop + 1])
    if "finetune-vlm" in names and start <= names.index("finetune-vlm") <= stop:
        source = next((n for n, given in (("synth", inputs.synthetic), ("slides", inputs.slides),
                                          ("patches", inputs.patches)) if given), "shards")
        steps.require_pairs(cfg, source, inputs.patches)
    if any(n in names and start <= names.index(n) <= stop for n in ("finetune-vlm", "describe")):
        from ..recipes.vlm.source import check_vlm_loadable

        check_vlm_loadable(cfg.vlm.model, "vlm.model")  # not after hours of tiling
    if any(n in names and start <= names.index(n) <= stop for n in ("finetune-vlm", "train")):
        check_precision(cfg.distributed, env.device)  # the DeepSpeed stages: not after the data stages
    ran = names[start:stop + 1]
    for what, folder in stage_folders(cfg, inputs, ran).items():
        refuse_file_in_the_way(folder, what)  # not a traceback from mkdir after the stages before it
    staged = cfg.model_copy(deep=True)  # as the stages run them: the pipeline registers in its own stage
    staged.tracking.register_name = None
    check_configs(staged, env.world_size, [r for r, stage in ((cfg.train.recipe, "train"), ("vlm", "finetune-vlm"))
                                           if stage in ran])  # what those stages would refuse at their start
    if "train" in names and start <= names.index("train") <= stop:
        check_models = getattr(steps.recipe_class(cfg.train.recipe), "check_models", None)
        if check_models is not None:
            check_models(cfg)  # not after the VLM stages
    if inputs.slides is None and inputs.patches is None and not inputs.synthetic and \
            not (Path(cfg.data.shards) / "manifest.json").is_file():
        raise UserError(f"data.shards {cfg.data.shards}: no shard set there; give --slides DIR --labels CSV, "
                        f"--patches DIR_OR_CSV or --synthetic, or point data.shards at a shard set")
    if start > 0:  # the first stage ran before (the later ones' records are checked as the pipeline reaches them)
        first_out = steps.plan_synth(cfg).output if inputs.synthetic else Path(cfg.data.shards) if inputs.slides \
            else steps.plan_shards(cfg, given_input(Path(inputs.patches), "patches")).output if \
            inputs.patches else steps.plan_verify(cfg).output  # (their planners' outputs, as run_pipeline's)
        require_done(names[0], first_out, names[start])
    return PipelinePlan(names, start, stop)


def refuse_unregistrable_run_name(cfg: Config, ran: Sequence[str]) -> None:
    """The register stage registers under `tracking.register_name`, else `run.name`: a run.name the registry
    refuses (`exp:1`, a fine folder name) failed that stage after the whole training."""
    import re

    from ..core.sections import refuse_registry_name

    spec = RECIPES.get(cfg.train.recipe)
    if "register" not in ran or cfg.tracking.register_name or spec is None or not spec.register:
        return
    try:
        refuse_registry_name(cfg.run.name)
    except ValueError as err:
        suggested = re.sub(r"[/:?]+", "-", cfg.run.name).strip(" -.") or "mmlnb"
        raise UserError(f"run.name '{cfg.run.name}' is the name the register stage would register the model under "
                        f"(tracking.register_name is unset), and {err}; give a valid one: "
                        f"tracking.register_name={suggested}") from None


def refuse_inputs_of_another_task(cfg: Config, inputs: PipelineInputs) -> None:
    """A recipe that trains on label sets (`RecipeSpec.shard_task`: clip) from inputs the pipeline makes one label
    per patch of (`--slides`, `--patches`) or from single-label synthetic data: its train stage would refuse the
    shard set after every stage before it had run (hours of tiling), and running again could never help."""
    spec = RECIPES.get(cfg.train.recipe)
    if spec is None:
        return
    if inputs.synthetic and cfg.data.synth.task != spec.shard_task:
        raise UserError(f"data.synth.task={cfg.data.synth.task}: the {spec.name} recipe trains on "
                        f"{'label sets' if spec.shard_task == 'multilabel' else 'one label per patch'}; set "
                        f"data.synth.task={spec.shard_task} (as its shipped profiles do)")
    if spec.shard_task != "multilabel":
        return
    build = ("build its shard set with `mmlnb-dist shards build --input PAIRS.csv --task multilabel --out DIR` "
             "(image, text and label-set columns: docs/data.md), then run the pipeline on it with data.shards=DIR")
    for flag, given in (("--slides", inputs.slides), ("--patches", inputs.patches)):
        if given is not None:
            raise UserError(f"{flag}: the {spec.name} recipe trains on label sets, and the pipeline builds one label "
                            f"per patch from {flag}; {build}")


def run_pipeline(cfg: Config, inputs: PipelineInputs, first: Optional[str] = None, last: Optional[str] = None,
                 env: Optional[DistEnv] = None, plan: Optional[PipelinePlan] = None) -> PipelineRun:
    """Run the stages of `stages_for(cfg, inputs)` from `first` to `last` (or `plan`'s, from `check_pipeline`);
    returns what each did, the evaluation and registration records and the report (written to
    `<run.output_dir>/<run.name>-pipeline/`).

    Under a launcher the process group is created here, before the first stage's barrier; it lives as long as
    the process (DeepSpeed caches its groups at module level, so a group destroyed and re-created between two
    engines in one process breaks the second; `core.recipe.run` never destroys it).
    """
    env = env or DistEnv.from_environment()
    plan = plan or check_pipeline(cfg, inputs, first, last, env)
    names, start, stop = plan.names, plan.start, plan.stop
    if env.is_distributed:  # the stages' barriers need the group; one process gets its group from the recipes
        init_engine_process_group(env, cfg.distributed)
    run = PipelineRun()
    # A slice that stops before register reports beside the full report, which keeps the evaluation and the
    # registration an earlier run made (and stays the one logged to MLflow).
    report_file = REPORT if stop == len(names) - 1 else f"report-{names[start]}-{names[stop]}.md"

    def do(stage: PlannedStage) -> Optional[StageResult]:
        i = names.index(stage.name)
        if i > stop:
            return None
        stage.owner = cfg.run.name  # the shared folders (data.shards, data.synth_dir) never change hands silently
        result = recorded(stage, names[start]) if i < start else run_planned(stage, env)
        run.results.append(result)
        return result

    if inputs.synthetic:
        source = do(steps.plan_synth(cfg))
        shards = do(steps.plan_shards(cfg, source)) if source else None
    elif inputs.slides is not None:
        shards = do(steps.plan_tile(cfg, Path(inputs.slides), Path(inputs.labels)))
    elif inputs.patches is not None:
        shards = do(steps.plan_shards(cfg, given_input(Path(inputs.patches), "patches")))
    else:  # data.shards holds a shard set (`check_pipeline`)
        shards = do(steps.plan_verify(cfg))
    if shards is None:
        return _finish(cfg, run, report_file=report_file)
    shards = steps.by_content(steps.shard_set_of(shards))
    train_input = shards
    if names.index(shards.name) + 1 > stop:
        return _finish(cfg, run, report_file=report_file)  # --until ends with the shards
    if stop >= names.index("train"):  # fail before the VLM stages, not after them
        from ..data.shardset import ShardSet

        for split, purpose in (("train", "to train on"), ("val", "to pick the best checkpoint")):
            ShardSet.open(shards.output).require_split(split, purpose)
    if RECIPES[cfg.train.recipe].needs_descriptions:
        if cfg.vlm.finetune:
            vlm = do(steps.plan_finetune_vlm(cfg, steps.pairs_for(cfg, shards), env))
        else:
            vlm = steps.base_vlm_stage(cfg)
            log.info("describe: the base VLM %s writes the descriptions (vlm.finetune=false: no adapter)",
                     cfg.vlm.model)
        described = do(steps.plan_describe(cfg, vlm, shards, env)) if vlm else None
        if described is None:
            return _finish(cfg, run, report_file=report_file)
        train_input = described
    train = do(steps.plan_train(cfg, train_input, env))
    evaluation = do(finish.plan_evaluate(cfg, train, train_input, env)) if train else None
    if evaluation is not None:
        run.evaluation = finish.read_evaluation(evaluation)
        registration = do(finish.plan_register(cfg, train))
        run.registration = dict(registration.info) if registration else None
        if registration is not None and registration.skipped and env.is_main:  # the alias may have moved since
            run.registration = finish.refresh_alias(run.registration, finish.tracking_uri(cfg), cfg.tracking)
    return _finish(cfg, run, shards, env, report_file)


def _finish(cfg: Config, run: PipelineRun, shards: Optional[StageResult] = None,
            env: Optional[DistEnv] = None, report_file: str = REPORT) -> PipelineRun:
    """Write the report (rank 0) as `report_file` and, when it is the full `report.md`, the config its predict line
    describes with, and log it to the training run in MLflow."""
    from .report import final_report, predict_line, served_model

    env = env or DistEnv.from_environment()
    uri = finish.tracking_uri(cfg)
    reg = run.registration or {}
    if reg.get("registered") and shards is not None:
        vlm = run.stage("finetune-vlm")
        run.predict = predict_line(cfg, served_model(reg), str(shards.output), uri,
                                   str(finish.pipeline_dir(cfg) / "predictions.csv"),
                                   RECIPES[cfg.train.recipe].needs_descriptions,
                                   vlm.info.get("adapter_dir") if vlm else None,
                                   "test" if "test" in ((run.evaluation or {}).get("patch") or {}) else "val")
    log_file = finish.pipeline_dir(cfg) / "pipeline.log"
    run.report = final_report(cfg, run.results, run.evaluation, run.registration, uri, run.predict,
                              str(log_file) if log_file.is_file() else None)
    if env.is_main:
        path = finish.pipeline_dir(cfg) / report_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run.report)
        if report_file != REPORT:
            full = path.with_name(REPORT)  # (a first slice has no full run's report to point at)
            log.info("report of this slice: %s%s", path, f" ({full} keeps the last full run's)" if full.is_file()
                     else "")
            return run
        save_config(cfg, finish.pipeline_config(cfg))  # the settings the printed predict line describes with
        train = run.stage("train")
        run_id = train.info.get("mlflow_run_id") if train else None
        if run_id and "mlflow" in cfg.tracking.backends:
            _log_report(uri, run_id, path)
    return run


def _log_report(uri: str, run_id: str, path: Path) -> None:
    import mlflow

    try:
        mlflow.MlflowClient(tracking_uri=uri).log_artifact(run_id, str(path))
    except Exception as err:  # noqa: BLE001 - the report is on disk either way
        log.warning("could not log %s to MLflow run %s at %s: %s", path.name, run_id, uri, err)


def run_demo(cfg: Config) -> List[StageResult]:
    """The embedded-default pipeline end to end (synthetic source); returns what each stage did."""
    return run_pipeline(cfg, PipelineInputs(synthetic=True)).results


def run_vlm_fusion(cfg: Config, env: Optional[DistEnv] = None, report: Optional[Report] = None) -> Dict[str, Any]:
    """Fine-tune the VLM, describe `data.shards`, train the fusion classifier into the run folder.

    The adapter and the descriptions live in the shared cache (`run.cache_dir`, which a search points all its
    trials at; default `<run dir>/cache`) under their stage fingerprints, so a trial whose VLM settings already
    ran reuses them and goes straight to training (which is the trial's own work: never skipped)."""
    env = env or DistEnv.from_environment()
    cache = Path(cfg.run.cache_dir or cfg.run.dir / "cache")
    shards = existing_shards(cfg.data.shards)
    vlm = steps.stage_finetune_vlm(cfg, shards, env, cache_root=cache) if cfg.vlm.finetune else \
        steps.base_vlm_stage(cfg)
    described = steps.stage_describe(cfg, vlm, shards, env, cache_root=cache)
    train_cfg = cfg.model_copy(deep=True)
    train_cfg.data.shards = described.output
    result = steps.run_recipe(steps.recipe_class(cfg.train.recipe), train_cfg, env, report)
    return {**result, "descriptions": str(described.output), "cache/description_hit": float(described.skipped),
            "vlm/val_loss": vlm.info.get("losses", {}).get("val/loss")}  # (none from the base VLM)

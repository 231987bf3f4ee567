"""The last two stages: evaluate the best checkpoint on the held-out splits, register it in MLflow.

    train -> evaluate (patch level and slide level, test and val) -> register (alias moved only when better)

`evaluate` runs on every rank: each rank predicts its share of the shards with the exported best checkpoint
(the weights the registry will serve), the predictions are gathered, rank 0 writes `evaluation.json`. A slide's
prediction is the argmax of its patches' mean probabilities; its truth is its patches' label.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..config import Config
from ..core.distributed import DistEnv, all_gather_object
from ..core.errors import UserError
from ..core.files import strict_json
from ..core.sections import TrackingConfig
from ..data.shardset import ShardSet
from ..core.tracking.registry import alias_selection
from ..recipes import RECIPES, load_class
from .stages import KEEP_OPEN, PlannedStage, StageResult, fingerprint, rank0_stage

log = logging.getLogger(__name__)

SPLITS = ("test", "val")
"""The headline split first."""


def pipeline_dir(cfg: Config) -> Path:
    """Where the pipeline keeps its own outputs (evaluation, registration, report.md, pipeline.log)."""
    return Path(cfg.run.output_dir) / f"{cfg.run.name}-pipeline"


def pipeline_config(cfg: Config) -> Path:
    """The pipeline's resolved config (written with the report): what its printed `predict` line describes new
    images with when no fine-tuning run lies beside an adapter (`vlm.finetune=false`)."""
    return pipeline_dir(cfg) / "config.yaml"


def registered_name(cfg: Config) -> str:
    return cfg.tracking.register_name or cfg.run.name


def tracking_uri(cfg: Config) -> str:
    from ..core.tracking.server import default_tracking_uri

    return default_tracking_uri(cfg.tracking, cfg.run.output_dir)


# ---------------------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------------------

def _sample_rows(path: Path, image_size: int) -> List[Dict[str, Any]]:
    from ..data.images import image_member, read_image
    from ..data.reader import iter_shard_samples

    rows = []
    for s in iter_shard_samples(path):
        meta = json.loads(s["json"]) if "json" in s else {}
        text = s.get("txt", b"")
        rows.append({"key": s["__key__"], "image": read_image(s[image_member(s)], image_size), "label": int(s["cls"]),
                     "slide_id": meta.get("slide_id"),
                     "text": text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)})
    return rows


def slide_level(rows: List[Dict[str, Any]], n_classes: int):
    """Per slide: mean patch probability (the slide's probabilities) and its patches' majority label."""
    import torch

    by_slide: Dict[str, List[Dict[str, Any]]] = {}
    for r in rows:
        if r["slide_id"] not in (None, ""):  # (an integer id 0 is a slide)
            by_slide.setdefault(str(r["slide_id"]), []).append(r)
    if not by_slide:
        return None, None, []
    slides = sorted(by_slide)
    probs = torch.tensor([[sum(r["probs"][c] for r in by_slide[s]) / len(by_slide[s]) for c in range(n_classes)]
                          for s in slides])
    targets = torch.tensor([Counter(r["label"] for r in by_slide[s]).most_common(1)[0][0] for s in slides])
    return probs, targets, slides


def evaluate_fusion_export(cfg: Config, export_dir: Path, shards_dir: Path, env: DistEnv) -> Dict[str, Any]:
    """Patch- and slide-level metrics of a fusion export on the val and test splits (collective)."""
    import torch

    from ..recipes.fusion.metrics import compute_metrics, scalar_metrics
    from ..recipes.fusion.pyfunc_model import load_predictor

    predictor = load_predictor(export_dir, device=str(env.device))
    classes = list(predictor.classes)
    shards = ShardSet.open(shards_dir)
    result: Dict[str, Any] = {"classes": classes, "patch": {}, "slide": {}, "slides": {}}
    batch = cfg.train.eval_batch_size or 64
    for split in SPLITS:
        if split not in shards.manifest["splits"] or not shards.num_samples(split):
            continue
        mine: List[Dict[str, Any]] = []
        for path, _ in shards.shards(split)[env.rank::env.world_size]:  # whole shards per rank, exactly once
            rows = _sample_rows(path, predictor.transform.image_size)  # decoded as the training loader decodes
            for i in range(0, len(rows), batch):
                part = rows[i:i + batch]
                out = predictor.predict([r["image"] for r in part], [r["text"] for r in part])
                for r, p in zip(part, out["probs"].tolist()):
                    mine.append({"key": r["key"], "slide_id": r["slide_id"], "label": r["label"], "probs": p})
        rows = sorted((r for part in all_gather_object(env, mine) for r in part), key=lambda r: r["key"])
        probs = torch.tensor([r["probs"] for r in rows])
        targets = torch.tensor([r["label"] for r in rows])
        patch = compute_metrics(probs, targets, classes, split=split)
        result["patch"][split] = {**scalar_metrics(patch), "confusion_matrix": patch["confusion_matrix"]}
        s_probs, s_targets, slide_ids = slide_level(rows, len(classes))
        if slide_ids:
            slide = compute_metrics(s_probs, s_targets, classes, split=f"{split} (slides)")
            result["slide"][split] = {**scalar_metrics(slide), "confusion_matrix": slide["confusion_matrix"]}
            result["slides"][split] = [{"slide_id": s, "label": classes[int(t)], "predicted": classes[int(p.argmax())],
                                        **{f"mean_prob_{c}": float(p[i]) for i, c in enumerate(classes)}}
                                       for s, t, p in zip(slide_ids, s_targets, s_probs)]
    return result


EVALUATORS: Dict[str, Callable[[Config, Path, Path, DistEnv], Dict[str, Any]]] = {"fusion": evaluate_fusion_export}
"""Recipes whose export the pipeline evaluates patch by patch (with slide aggregates); the others report the
best-checkpoint metrics their own run computed on each split (e.g. the multi-label CLIP recipe)."""


def recipe_metrics(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """`{"patch": {split: {metric: value}}}` from a recipe's result (`test/x`, `val/x`)."""
    patch: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        split, _, name = key.partition("/")
        if split in SPLITS and name and isinstance(value, (int, float)):
            patch.setdefault(split, {})[name] = float(value)
    return {"patch": patch, "slide": {}, "slides": {}}


def plan_evaluate(cfg: Config, train: StageResult, shards: StageResult, env: Optional[DistEnv] = None) -> PlannedStage:
    """The best checkpoint (the recipe's export) on the held-out test split, validation beside it."""
    out = pipeline_dir(cfg) / "evaluate"
    fp = fingerprint("evaluate", train.fingerprint, shards.fingerprint)

    def work(resume: bool) -> Dict[str, Any]:
        env_ = env or DistEnv.from_environment()
        metrics = train.info.get("metrics", {})
        evaluator = EVALUATORS.get(cfg.train.recipe)
        if evaluator is not None and metrics.get("export_dir"):
            result = evaluator(cfg, Path(metrics["export_dir"]), shards.output, env_)
        else:
            result = recipe_metrics(metrics)
        result["recipe"] = recipe_metrics(metrics)["patch"]  # the run's own numbers, for comparison
        result["copies_of_train"] = ShardSet.open(shards.output).copies_of_train()  # held-out samples seen in train
        if env_.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "evaluation.json").write_text(json.dumps(strict_json(result), indent=2, allow_nan=False))
        return {"evaluation": str(out / "evaluation.json")}

    return PlannedStage("evaluate", out, fp, work)


def read_evaluation(result: StageResult) -> Dict[str, Any]:
    return json.loads(Path(result.info["evaluation"]).read_text())


# ---------------------------------------------------------------------------------------------------------
# register
# ---------------------------------------------------------------------------------------------------------

def _send_training_journal(run_dir: Path, uri: str) -> Tuple[Optional[str], str]:
    """Upload the training run's MLflow journal (`tracking sync` of its folder), or make it from the metrics the
    folder kept when training had no mlflow backend (`tracking import`): (its run id, "") once the server has it,
    else (None, why not)."""
    from ..core.tracking.folder_import import METRICS_FILE, FolderImportError, import_run_folder
    from ..core.tracking.journal import Spool, upload

    spool = Spool.for_stage(run_dir, "train")
    journaled = spool.path.is_file()
    if not journaled and not (run_dir / METRICS_FILE).is_file():
        return None, f"{run_dir} has no MLflow journal to send (tracking.spool was off)"
    try:
        # without a journal (no mlflow in tracking.backends) the run's MLflow run is made from the metrics it kept
        # to `uri`: the store this stage registers in (a new one when the run's own store was lost)
        result = upload(spool, uri) if journaled else import_run_folder(run_dir, "train", uri)
    except (ConnectionError, ValueError, FolderImportError) as err:
        return None, str(err)
    if result.get("skipped") or not result.get("run_id"):
        return None, result.get("skipped") or f"{spool.path} names no run"
    log.info("sent %d journaled event(s) of %s to MLflow run %s", result["sent"], run_dir, result["run_id"])
    return result["run_id"], ""


LOST_STORE_REMEDY = ("put back the store that held it (or set tracking.uri=sqlite:////ABSOLUTE/PATH to where it is "
                     "now); if it is lost, set tracking.uri to a new store: the register stage then sends the "
                     "training run's journal there and registers it (training is not redone)")
"""What a pipeline user does about a store that lost what the pipeline recorded in it (`require_sqlite_store`)."""


def _training_run(train: StageResult, uri: str) -> Optional[str]:
    """The training run's MLflow run id when it was logged to the store `uri` (None: it has none yet, or it is in
    another store: its journal is sent to `uri` first). A recorded store that is gone is refused: registering there
    would make an empty store and fail in it."""
    from ..core.tracking.journal import recorded_run
    from ..core.tracking.server import absolute_sqlite_uri, require_sqlite_store

    run_id = train.info.get("mlflow_run_id")
    if not run_id:
        return None
    logged_to = recorded_run(Path(train.info["run_dir"])).get("tracking_uri")
    if logged_to and absolute_sqlite_uri(logged_to) != uri:
        return None
    require_sqlite_store(uri, f"register: the training run {run_id} ({train.info['run_dir']})",
                         LOST_STORE_REMEDY)
    return run_id


def registration_lost(uri: str, tracking: Optional[TrackingConfig] = None) -> Callable[[Dict[str, Any]],
                                                                                        Optional[str]]:
    """The register stage's `Recheck`: an up-to-date registration is skipped only while the store still holds its
    version, from the recorded run (one lookup); else the stage registers again (the store holds the run) or is
    refused (the store is gone, or holds neither: a moved or replaced database). A server that does not answer,
    or a lookup that fails for another reason than "not there", leaves the record trusted (with a warning)."""

    def recheck(state: Dict[str, Any]) -> Optional[str]:
        if not state.get("registered"):
            return None  # nothing of it is in the store
        import mlflow
        from mlflow.exceptions import MlflowException

        from ..core.tracking import server

        model, run_id = state.get("model_uri") or f"models:/{state['name']}/{state['version']}", state["run_id"]
        what = f"register: the registration {model} (training run {run_id})"
        server.require_sqlite_store(uri, what, LOST_STORE_REMEDY)  # before MLflow would make an empty one there
        server.limit_http_retries(tracking)  # a server that goes down mid-lookup: seconds, not minutes
        if not server.server_reachable(uri, (tracking or TrackingConfig()).request_timeout_s):
            log.warning("register: the MLflow server %s does not answer, so %s was not checked; its record is kept",
                        uri, model)
            return None
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            holder = client.get_model_version(state["name"], str(state["version"])).run_id
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                log.warning("register: could not check that %s is still in %s (%s); its record is kept", model,
                            uri, err)
                return None
            holder = None
        if holder == run_id:
            return None
        try:
            client.get_run(run_id)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":  # a connection or server failure: no answer
                log.warning("register: could not look up the training run %s of %s in %s (%s); its record is kept",
                            run_id, model, uri, err)
                return None
            raise UserError(f"{what} is not in the MLflow store {uri}, nor is its training run (another database in "
                            f"its place?); {LOST_STORE_REMEDY}") from None
        return f"{model} is no longer in the MLflow store {uri}" if holder is None else \
            f"{model} in the MLflow store {uri} is another run's ({holder})"

    return recheck


def _alias_version(uri: str, res: Any) -> Optional[str]:
    """The version holding the alias after this registration (the report serves that one only when it is the new
    version; on a retry of a registration the alias may already be on it without having moved now)."""
    if not res.alias:
        return None
    if res.alias_moved:
        return str(res.version)
    import mlflow

    from ..core.tracking.versions import alias_holder

    holder, _ = alias_holder(mlflow.MlflowClient(tracking_uri=uri), res.name, res.alias)
    return str(holder.version) if holder is not None else None


def refresh_alias(registration: Dict[str, Any], uri: str,
                  tracking: Optional[TrackingConfig] = None) -> Dict[str, Any]:
    """A skipped (up-to-date) registration's record with `alias_version` as the store has it now: another run may
    have taken the alias since, and the report and its predict line would serve that run's model as this one's.
    The record as it is when the store cannot be asked (a server down: warned)."""
    if not registration.get("registered") or not registration.get("alias"):
        return registration
    import mlflow

    from ..core.tracking import server
    from ..core.tracking.versions import alias_holder

    if not server.server_reachable(uri, (tracking or TrackingConfig()).request_timeout_s):
        log.warning("register: the MLflow server %s does not answer: the report says where the alias %s was "
                    "when this run registered, not where it is now", uri, registration["alias"])
        return registration
    holder, _ = alias_holder(mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), registration["name"],
                             registration["alias"])
    now = str(holder.version) if holder is not None else None
    if now != registration.get("alias_version"):
        log.info("register: %s@%s is on version %s now (this run registered version %s)", registration["name"],
                 registration["alias"], now, registration["version"])
    return {**registration, "alias_version": now}


def plan_register(cfg: Config, train: StageResult) -> PlannedStage:
    """The recipe's `register` hook: a new version of `tracking.register_name` (default `run.name`); the alias
    (`tracking.register_alias`, champion) moves to it only when its metric beats the holder's."""
    spec = RECIPES[cfg.train.recipe]
    t = cfg.tracking
    metric, mode = alias_selection(t, cfg.train.best_metric, spec.lower_is_better)
    name, uri, out = registered_name(cfg), tracking_uri(cfg), pipeline_dir(cfg) / "register"
    fp = fingerprint("register", train.fingerprint, name, t.register_alias, metric, mode, uri)

    def work(resume: bool) -> Dict[str, Any]:
        if not spec.register:
            return {"registered": False, "reason": f"the {spec.name} recipe has no model to register"}
        if "mlflow" not in t.backends:  # kept open: a rerun with mlflow imports the training run, then registers
            return {"registered": False, KEEP_OPEN: True,
                    "reason": "tracking.backends has no mlflow, so training made no MLflow run to register (rerun "
                              "with mlflow in tracking.backends: this stage makes the training run's MLflow run "
                              "from the metrics it kept, then registers it; training is not redone)"}
        run_id = _training_run(train, uri)
        if not run_id:  # training could not reach the server, had no mlflow, or logged to a lost store: send it
            run_id, why = _send_training_journal(Path(train.info["run_dir"]), uri)
            if not run_id:
                return {"registered": False, KEEP_OPEN: True,
                        "reason": f"the training run never reached the tracking server ({why}); rerun the same "
                                  f"command when it is up: this stage sends the run's journal, then registers it"}
        res = load_class(spec.register)(run_id, name, alias=t.register_alias or None, tracking_uri=uri,
                                        metric=metric, mode=mode, model_dir=None)
        out.mkdir(parents=True, exist_ok=True)
        info = {"registered": True, "tracking_uri": uri, "run_id": run_id, **res.as_dict(),
                "alias_version": _alias_version(uri, res)}
        (out / "registered.json").write_text(json.dumps(info, indent=2, default=str))
        log.info("registered %s version %s: %s", res.name, res.version, res.reason)
        return info

    stage = rank0_stage(cfg.distributed, "register", out, fp, work)
    stage.recheck = registration_lost(uri, t)
    return stage

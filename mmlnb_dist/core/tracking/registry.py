"""The MLflow Model Registry, for any recipe: log a run's model as a pyfunc, register it, move an alias.

    result = register_model(run_id, "mmlnb-nb", package_fn, alias="champion", tracking_uri=uri,
                            metric="best/val/balanced_accuracy", mode="max")

The recipe supplies `package_fn(run) -> ModelPackage` (its model code file, artifacts, signature, example and the
recipe-specific parts of the model card). The model is logged as code (MLflow "models from code"), so loading it
unpickles nothing; `refuse_unpickling` rejects model folders that hold pickles. The alias moves to the new
version only when its metric strictly beats the alias holder's (on a tie the holder keeps it), read from the
holder's own run, not from the latest version (aliases, not the deprecated stages).
"""
from __future__ import annotations

import logging
import re
import shlex
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Dict, List, Optional, Sequence, Tuple

from ..checkpoint import better
from ..errors import ConfigError, UserError
from .card import model_card, run_config_text, version_description
from .lineage import not_comparable, other_stage, scored_on, unscored  # noqa: F401 - scored_on: the registry's rule
from .metric_name import UnknownMetricError, require_metric, run_metric
from .params import effective_params
from .versions import (ARTIFACTS_TAG, alias_holder, alias_turn, artifacts_digest, check_export_unchanged,
                       new_version, registered_before)

log = logging.getLogger(__name__)


def check_registration(tracking: Any) -> None:
    """Refuse, before any work, a `tracking.register_name` that the end of training could not honour: a run
    without the mlflow backend has no MLflow run to register (the fusion recipe used to train and register
    nothing, silently). Each recipe that registers at the end of training calls it from its `check`."""
    if tracking.register_name and "mlflow" not in tracking.backends:
        raise ConfigError(f"tracking.register_name: registering '{tracking.register_name}' needs an MLflow run, but "
                          f"tracking.backends is {list(tracking.backends)}; add mlflow to tracking.backends "
                          f"(tracking.backends=[stdout,mlflow]) or unset tracking.register_name")


def alias_selection(tracking: Any, best_metric: str, lower_is_better: Collection[str]) -> Tuple[str, str]:
    """The metric that decides the alias and its direction: `tracking.register_metric` when set, else
    `best/val/<best_metric>` (the exported best checkpoint's validation value); `tracking.register_mode` when set,
    else lower-better when the recipe says so of the metric (`lower_is_better`, e.g. the loss)."""
    metric = tracking.register_metric or f"best/val/{best_metric}"
    return metric, tracking.register_mode or metric_mode(metric, lower_is_better)


def metric_mode(metric: str, lower_is_better: Collection[str]) -> str:
    """`min` when the metric's name (its last part: `best/val/loss` -> `loss`) is lower-is-better, else `max`."""
    return "min" if metric.rsplit("/", 1)[-1] in lower_is_better else "max"


def register_or_explain(run_id: Optional[str], online: bool, name: str, run_dir: Path,
                        register: Callable[[str], "RegisterResult"]) -> Dict[str, Any]:
    """`register(run_id)` at the end of a training or a search (rank 0), unless the tracking server stands in the
    way: a run it never saw (`run_id` None, or its logger went `online=False`) or a server lost during the
    registration warns and returns why, with `register_later`: the two commands that register the run folder
    `run_dir` once the server is back. The finished, exported run is never failed by the server."""
    import mlflow

    folder, model = shlex.quote(str(run_dir)), shlex.quote(name)  # a shell runs the commands as printed
    later = f"mmlnb-dist tracking sync {folder} && mmlnb-dist register --run {folder} --name {model}"
    if not run_id or not online:
        reason = "the tracking server was not reachable during training"
    else:
        try:
            res = register(run_id)
            log.info("registered %s version %s: %s", res.name, res.version, res.reason)
            if res.alias_moved:
                log.info("models:/%s@%s -> version %s", res.name, res.alias, res.version)
            return {"registered": True, **res.as_dict()}
        except (OSError, mlflow.exceptions.MlflowException) as err:  # OSError: requests' errors, lost sockets
            reason = f"the tracking server failed the registration: {type(err).__name__}: {str(err)[:300]}"
        except UnknownMetricError as err:  # tracking.register_metric mistyped: the trained run stays a success
            later = f"mmlnb-dist register --run {folder} --name {model} --metric METRIC"
            log.warning("not registered as %s: tracking.register_metric: %s; register it with the metric you "
                        "meant: %s", name, err, later)
            return {"registered": False, "reason": str(err), "register_later": later}
    log.warning("not registered as %s: %s; once the server is back: %s", name, reason, later)
    return {"registered": False, "reason": reason, "register_later": later}


class RegistryError(UserError, RuntimeError):
    """The run, its model files or the registered model is missing or unusable; the message says which."""


@dataclass
class ModelPackage:
    """What a recipe logs for one registered version."""

    python_model: str
    """Path of the model's code file (MLflow "models from code": it ends with `mlflow.models.set_model(...)`).
    Never an object: a logged object is pickled, and loading it would unpickle."""
    artifacts: Dict[str, str]
    """Files the model loads (`context.artifacts` names -> paths)."""
    signature: Any
    input_example: Any
    card_sections: Dict[str, str] = field(default_factory=dict)
    """Recipe-specific model-card sections (title -> Markdown body), e.g. classes and usage."""
    title: str = "model"
    metadata: Dict[str, Any] = field(default_factory=dict)
    version_tags: Dict[str, str] = field(default_factory=dict)
    code_paths: List[str] = field(default_factory=list)
    requirements: List[str] = field(default_factory=list)
    """Distributions the model's code imports beyond the base set (e.g. `timm`, `open_clip_torch`), pinned to this
    environment's versions in the logged model's requirements, so `mlflow models serve` in a fresh environment
    installs them."""
    metric_settings: List[str] = field(default_factory=list)
    """Config keys (logged as the run's params) that change how the recipe computes its metrics (clip:
    `clip.top_k`, the k of its top-k F1): the alias does not move between runs whose values differ."""


@dataclass
class RegisterResult:
    name: str
    version: str
    model_uri: str
    alias: Optional[str]
    alias_moved: bool
    metric: str
    value: Optional[float]
    previous_value: Optional[float]
    reason: str

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


UNPICKLING_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".ckpt")
"""Files that need unpickling to load (Python pickles, torch.save / pytorch_model.bin checkpoints)."""


def unpickling_files(folder: Path) -> List[Path]:
    """Files under `folder` whose loading would unpickle: a model folder of ours holds none (weights are
    safetensors, settings JSON, the model code Python source)."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and (p.suffix.lower() in UNPICKLING_SUFFIXES or "cloudpickle" in p.name.lower()))


def refuse_unpickling(folder: Path, what: str = "model folder") -> None:
    """Raise `RegistryError` naming the first file under `folder` that would need unpickling."""
    found = unpickling_files(folder)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise RegistryError(f"{what} {folder} holds {found[0].relative_to(folder)}{more}, a file that would be "
                            f"unpickled to load; refusing it (our models are safetensors + JSON + model code). "
                            f"Re-register the run with this version (`mmlnb-dist register`) or remove the file.")


def run_folder(run) -> Path:
    """The run folder a run was logged from (its `run_dir` tag)."""
    run_dir = run.data.tags.get("run_dir")
    if not run_dir:
        raise RegistryError(f"run {run.info.run_id} has no 'run_dir' tag; pass the model folder explicitly")
    return Path(run_dir)


EXPORT_FOLDER = "export"
"""Where every recipe writes its model inside the run folder (`<run folder>/export`)."""


@dataclass
class RunToRegister:
    """A training run found from what a user has at hand: its MLflow run id, or the run folder `train` printed."""

    run_id: str
    tracking_uri: str
    params: Dict[str, str]
    """The run's logged parameters: its own `train.recipe` and `train.best_metric` among them."""
    export_dir: Optional[Path] = None
    """`<run folder>/export` when the run was given as a folder (the folder may have moved since training)."""
    run_dir: Optional[Path] = None
    """The run's folder: the one given, else the run's `run_dir` tag (None when it has none)."""
    metrics: Dict[str, float] = field(default_factory=dict)
    """The run's logged metrics (latest values): the selection metric must be one of them."""
    status: str = "FINISHED"
    """The MLflow run's status (`refuse_unfinished`)."""

    def refuse_unfinished(self) -> None:
        """Refuse a run that did not finish: a finished run resumed and killed keeps its earlier finish's export,
        which is not the model of the run its config describes (and was registered under the KILLED run)."""
        if self.status != "FINISHED":
            raise RegistryError(f"run {self.run_id} at {self.tracking_uri} is {self.status}, not finished: its "
                                f"export, if any, is of an earlier finish and not of the run its config describes; "
                                f"finish it (rerun its command with run.resume=true), then register it")


def find_run(run: str, tracking_uri: str, *, uri_given: bool = False) -> RunToRegister:
    """Resolve `run`: an MLflow run id in the store `tracking_uri`, or a run folder whose tracking record
    (`tracking/train.json`) names the run id and the store it was logged to (used unless `uri_given`)."""
    import mlflow

    from .journal import JOURNAL_DIR, recorded_run
    from .server import require_sqlite_store

    folder = Path(run)
    export_dir = None
    if folder.is_dir():
        state = recorded_run(folder)
        runs = sorted(str(d) for d in folder.iterdir() if (d / JOURNAL_DIR / "train.json").is_file()) \
            if not state.get("run_id") else []
        if runs:  # a runs folder: the import and sync it was told to try would not have helped
            raise RegistryError(f"--run {run} is a folder of runs; give one run folder: --run {shlex.quote(runs[0])}"
                                f" ({len(runs)} there: {', '.join(runs[:10])}{', ...' if len(runs) > 10 else ''})")
        other = other_stage(folder)
        if other:  # `<name>-describe`, `<name>-evaluate-val`: no model of its own
            tracked = f" (MLflow run {other[1]})" if other[1] else ""
            raise RegistryError(f"--run {run} is the folder of a {other[0]} run{tracked}, not of a training run; "
                                f"give the training run's folder (runs/NAME, as `train` prints it)")
        if not state.get("run_id"):
            raise RegistryError(
                f"--run {run}: the folder has no MLflow training run on record ({folder / JOURNAL_DIR}/train.json "
                f"with a run id). Trained without mlflow in tracking.backends: `mmlnb-dist tracking import "
                f"{shlex.quote(run)}` "
                f"makes its MLflow run from the metrics the folder kept; if the tracking server was unreachable, "
                f"`mmlnb-dist tracking sync {shlex.quote(run)}` uploads the run first; or pass the run id.")
        run_id, export_dir = state["run_id"], folder / EXPORT_FOLDER
        tracking_uri = tracking_uri if uri_given else state.get("tracking_uri") or tracking_uri
    elif "/" in run or folder.exists():
        raise RegistryError(f"--run {run}: neither a run folder nor an MLflow run id")
    else:
        run_id = run
    require_sqlite_store(tracking_uri, f"--run {run}: run {run_id}")  # never an empty store made in its place
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        found = client.get_run(run_id)
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for a missing run
        hint = "" if re.fullmatch(r"[0-9a-f]{32}", run_id) else (  # a run's name (what the MLflow UI shows) or a typo
            f" (--run takes a run folder, runs/NAME as `train` prints it, or a 32-hex MLflow run id; no folder "
            f"{run} is here, in {Path.cwd()})")
        raise RegistryError(f"run {run_id} not found at {tracking_uri}: {err}{hint}") from None
    if found.info.lifecycle_stage != "active":  # MLflow refused to log into it only after the model was packaged
        raise RegistryError(f"run {run_id} at {tracking_uri} was deleted; restore it first (MLFLOW_TRACKING_URI="
                            f"{tracking_uri} mlflow runs restore --run-id {run_id})")
    tagged = found.data.tags.get("run_dir")
    run_dir = export_dir.parent if export_dir is not None else Path(tagged) if tagged else None
    # the values the run ended with: a resume that changed a setting (train.best_metric) logged it as a tag
    return RunToRegister(run_id, tracking_uri, effective_params(found), export_dir, run_dir, dict(found.data.metrics),
                         found.info.status)


BASE_REQUIREMENTS = ("torch", "torchvision", "transformers", "safetensors", "tokenizers", "numpy", "pandas",
                     "pillow", "pyyaml", "pydantic", "mlflow")


def pinned_requirements(extra: Sequence[str] = ()) -> List[str]:
    """Pinned from this environment (the base set plus a package's `extra`): skips MLflow's slow requirement
    inference (it reloads the model). A distribution not installed here is left out."""
    from importlib import metadata

    reqs = []
    for name in dict.fromkeys([*BASE_REQUIREMENTS, *extra]):
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def register_trained(tracking: Any, output_dir: Path, best_metric: str, lower_is_better: Collection[str],
                     run_id: str, package_fn: Callable[[Any], ModelPackage]) -> RegisterResult:
    """The end-of-training registration of a recipe's run (rank 0, `tracking.register_name` set): a new version
    of that name in the run's store, the alias moved as `alias_selection` says."""
    from .server import default_tracking_uri

    metric, mode = alias_selection(tracking, best_metric, lower_is_better)
    return register_model(run_id, tracking.register_name, package_fn, alias=tracking.register_alias, metric=metric,
                          mode=mode, tracking_uri=default_tracking_uri(tracking, output_dir))


def _log_version(client, run, name: str, package: ModelPackage, code: Path, metric: str, value: Optional[float],
                 digest: str) -> str:
    """Log the run's model as a pyfunc with its model card and register it as a new version of `name`, tagged."""
    import mlflow

    run_id = run.info.run_id
    card = model_card(run, package, metric, run_config_text(client, run))
    # None when unset: `get_tracking_uri` would give MLflow's default (`<cwd>/mlflow.db`), and setting that back
    # would export it as MLFLOW_TRACKING_URI to everything this process runs afterwards
    previous_tracking = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(client.tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:  # MLflow copies artifacts when it logs them
        card_path = Path(tmp) / "MODEL_CARD.md"
        card_path.write_text(card)
        try:
            # Attach the logged model to the training run (start_run(run_id) here, never MLFLOW_RUN_ID).
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=str(code),
                    artifacts={**package.artifacts, "model_card": str(card_path)},
                    code_paths=package.code_paths or None, signature=package.signature,
                    input_example=package.input_example, pip_requirements=pinned_requirements(package.requirements),
                    metadata={**package.metadata, "metric": metric, "metric_value": value},
                )
            # while the tracking URI is this store's: the version's source (models:/<id>) resolves through it
            # The version is made whole in one call, its tags (the ones `registered_before` finds it by) and its
            # card included: set one by one after it, a server lost in between left a version a retry could not
            # find, and the retry registered a second copy of the same run's weights.
            tags = {"source_run_id": run_id, ARTIFACTS_TAG: digest, **package.version_tags,
                    **({metric: str(value)} if value is not None else {})}
            version = new_version(client, name, info.model_uri, run_id, info.model_id, tags=tags,
                                  description=version_description(card))
        finally:
            mlflow.set_tracking_uri(previous_tracking)
    return version


def register_model(run_id: str, name: str, package_fn: Callable[[Any], ModelPackage], *,
                   alias: Optional[str] = "champion", tracking_uri: Optional[str] = None,
                   metric: str = "best/val/balanced_accuracy", mode: str = "max") -> RegisterResult:
    """Log run `run_id`'s model (built by `package_fn(run)`) as a pyfunc, register it as a new version of
    `name`, and move `alias` to it when its `metric` beats the current holder's."""
    import mlflow

    # The registry is this store's own, explicitly: MLflow's process-wide registry URI may point elsewhere (left by
    # `predict` or another job in the same process), and a version must never land in another store.
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for a missing run
        raise RegistryError(f"run {run_id} not found at {client.tracking_uri}: {err}") from None
    require_metric(run.data.metrics, metric, run_id)  # before anything is logged: a typo froze the alias for good
    package = package_fn(run)
    code = Path(str(package.python_model))
    if not (isinstance(package.python_model, (str, Path)) and code.suffix == ".py" and code.is_file()):
        raise RegistryError(f"the model package of run {run_id} must name its model code file (.py, MLflow models "
                            f"from code), not {package.python_model!r}: a logged object would be pickled")
    value = run_metric(run, metric, mode, client)
    if "export" in package.artifacts:  # the files the run exported, not a changed or replaced copy
        tagged = run.data.tags.get("run_dir")
        check_export_unchanged(run, Path(package.artifacts["export"]), Path(tagged) if tagged else None)
    digest = artifacts_digest(package.artifacts)
    version = registered_before(client, name, run_id, digest)
    again = version is not None  # a rerun or a retry: the same run's same weights are a version already
    if version is None:
        version = _log_version(client, run, name, package, code, metric, value, digest)

    previous, moved, reason = None, False, "no alias requested"
    if alias:
        with alias_turn(client.tracking_uri, name):
            previous, moved, reason = _move_alias(client, name, alias, version, run, package, metric, mode, value)
    if again:
        reason = (f"already, by an earlier registration of run {run_id} with these weights: nothing new logged "
                  f"({reason})")
    return RegisterResult(name, version, f"models:/{name}/{version}", alias, moved, metric, value, previous, reason)


def readable_pair(value: Optional[float], previous: Optional[float]) -> Tuple[str, str]:
    """Two scores for a person (the reason): 4 significant places, or as many as tell two different ones apart
    (0.666666 vs 0.666667); the result keeps the full values."""
    for places in range(4, 18):
        shown = tuple("None" if v is None else f"{v:.{places}g}" for v in (value, previous))
        if shown[0] != shown[1] or value == previous:
            return shown
    return str(value), str(previous)


def _move_alias(client, name: str, alias: str, version: str, run, package: ModelPackage, metric: str, mode: str,
                value: Optional[float]) -> Tuple[Optional[float], bool, str]:
    """Move `alias` to `version` when its `metric` beats the holder's (held in `alias_turn`): (the holder's value,
    whether it moved, why)."""
    moved = False
    holder, holder_run = alias_holder(client, name, alias)
    previous = run_metric(holder_run, metric, mode, client) if holder_run is not None else None
    shown, held = readable_pair(value, previous)
    if holder is not None and str(holder.version) == version:
        reason = f"version {version} holds '{alias}'"
    elif holder is None:
        moved, reason = True, f"first version with alias '{alias}'"
    elif holder_run is None:  # nothing left to keep it by (it read "X beats None")
        moved, reason = True, (f"version {holder.version} held '{alias}', but its run {holder.run_id or '(none)'} is "
                               f"gone (deleted for good): no score to compare with")
    elif why := (unscored(holder_run, str(holder.version), metric)
                 or not_comparable(holder_run, str(holder.version), run, metric, package.metric_settings)):
        reason = (f"{why}; version {holder.version} keeps '{alias}' (score both alike with `mmlnb-dist "
                  f"evaluate`; if this one is better, move the alias in MLflow: MlflowClient("
                  f"'{client.tracking_uri}').set_registered_model_alias('{name}', '{alias}', {version}))")
    elif better(value, previous, mode):
        moved, reason = True, f"{metric} {shown} beats {held} (version {holder.version})"
    else:
        reason = f"{metric} {shown} does not beat {held} (version {holder.version} keeps '{alias}')"
    if moved:
        client.set_registered_model_alias(name, alias, version)
    return previous, moved, reason


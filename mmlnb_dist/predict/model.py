"""Loading a registered model for `predict`: a `models:/`, `runs:/` or local MLflow model folder, refused when
anything in it would be unpickled to load."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Tuple
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .errors import ModelNotFound, ModelNotLoadable, UnsafeModel

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
"""What an MLflow run id looks like (given as `--model`, it is no folder: the run's model is `runs:/ID/model`)."""


def local_folder(model_uri: str) -> Optional[Path]:
    """The folder a local model URI names (a path, or MLflow's `file:` form of one); None for a store's URI."""
    url = urlsplit(model_uri)
    if url.scheme == "file" and url.netloc in ("", "localhost"):
        return Path(url2pathname(url.path))
    return None if model_uri.startswith(("models:/", "runs:/", "http", "s3:", "gs:")) else Path(model_uri)


def load_model(model_uri: str, tracking_uri: Optional[str] = None):
    """`mlflow.pyfunc.load_model` with a clear error for a missing model. The model folder is fetched first and
    refused (`UnsafeModel`, naming the file) when anything in it would be unpickled to load."""
    import mlflow

    from ..core.errors import UserError
    from ..core.tracking.registry import RegistryError, refuse_unpickling

    given = local_folder(model_uri)
    local = given is not None
    model_uri = str(given) if local else model_uri
    if local and not Path(model_uri).exists():
        run_id = f"; an MLflow run id? its model is runs:/{model_uri}/model" if RUN_ID.match(model_uri) else ""
        raise ModelNotFound(f"model not found: {model_uri} (no such folder; use models:/NAME@ALIAS{run_id})")
    if local and (Path(model_uri) / "model_config.json").is_file() and not (Path(model_uri) / "MLmodel").is_file():
        run_dir = Path(model_uri).parent
        raise ModelNotFound(f"{model_uri} is a training export (the weights `evaluate --export` scores), not an "
                            f"MLflow model: register it (mmlnb-dist register --run {run_dir} --name NAME), then "
                            f"predict with --model models:/NAME@champion")
    if local and Path(model_uri).is_dir() and not (Path(model_uri) / "MLmodel").is_file():
        _refuse_local_folder(Path(model_uri))
    if model_uri.startswith("runs:/"):  # (the run alone: MLflow fetched all its artifacts, then found no MLmodel)
        run_id, _, path = model_uri[len("runs:/"):].strip("/").partition("/")
        if not path.strip("/"):
            raise ModelNotFound(f"model not found: {model_uri} names no model path in the run: give "
                                f"runs:/{run_id or 'RUN_ID'}/model (the path the model is logged under)")
    if not local:
        _check_store(model_uri, tracking_uri)
    try:
        folder = Path(model_uri) if local else _download_model(model_uri, tracking_uri)
    except ModelNotFound:
        raise
    except Exception as err:  # noqa: BLE001 - MLflow raises MlflowException / OSError variants
        where = f" in {tracking_uri}" if tracking_uri and not local else ""
        raise ModelNotFound(f"model not found: {model_uri}{where} ({_first_line(err)})") from None
    try:
        refuse_unpickling(folder, f"model {model_uri}: folder" if not local else "model folder")
    except RegistryError as err:
        raise UnsafeModel(str(err)) from None
    try:
        return mlflow.pyfunc.load_model(str(folder))
    except UserError as err:  # our own loader's refusal (e.g. an export's unknown encoder): whole, it says what to do
        raise ModelNotLoadable(f"model {model_uri} was found but could not be loaded: {err}") from None
    except Exception as err:  # noqa: BLE001
        raise ModelNotLoadable(f"model {model_uri} was found but could not be loaded ({_first_line(err)})") from None


def _refuse_local_folder(folder: Path) -> None:
    """A local folder without MLmodel is no MLflow model; a training run folder is told how to become one (its
    checkpoints were reported as files to remove, as if the folder were a model holding pickles)."""
    if (folder / "config.yaml").is_file() and ((folder / "export").is_dir() or (folder / "checkpoints").is_dir()):
        raise ModelNotFound(f"{folder} is a training run folder, not an MLflow model: register it (mmlnb-dist "
                            f"register --run {folder} --name NAME), then predict with --model models:/NAME@champion")
    raise ModelNotFound(f"model not found: {folder} holds no MLmodel file: not an MLflow model folder (give a "
                        f"registered model, models:/NAME@ALIAS, or the folder MLflow saved the model to)")


def _check_store(model_uri: str, tracking_uri: Optional[str]) -> None:
    """A SQLite store that does not exist holds no model: say where it was looked for instead of letting MLflow
    create an empty one there (the default store is `runs/mlflow.db` under the current folder, so a `predict`
    from another folder looked in, and left behind, a new empty store)."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:"):
        return
    from sqlalchemy.engine import make_url  # MLflow's own parser of store URIs (query strings, in-memory stores)

    database = make_url(tracking_uri).database
    db = Path(database) if database and database != ":memory:" else None
    if db is not None and not db.is_file():
        raise ModelNotFound(f"model not found: {model_uri}: no MLflow store at {db.resolve()} (give --uri the store "
                            f"the model was registered in, as the pipeline's report prints it, or --config of its "
                            f"run)")


def _download_model(model_uri: str, tracking_uri: Optional[str]) -> Path:
    """The local folder of a `models:/` or `runs:/` URI, resolved in the store `tracking_uri` through an explicit
    client: `mlflow.set_tracking_uri` would change the store of everything else in this process (and of its
    subprocesses, through MLFLOW_* variables), and MLflow resolves `models:/` only through those."""
    import mlflow

    if not tracking_uri:
        return Path(mlflow.artifacts.download_artifacts(model_uri))
    source = model_uri
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if model_uri.startswith("runs:/"):
        source = _run_model_source(client, model_uri)
    if model_uri.startswith("models:/"):
        from mlflow.store.artifact.utils.models import get_model_name_and_version

        named = model_uri[len("models:/"):].rstrip("/")
        if "/" not in named and "@" not in named and not named.startswith("m-"):  # (MLflow: a logged model's id)
            raise ModelNotFound(f"model not found: {model_uri} names no version or alias: give "
                                f"models:/{named}@champion (an alias) or models:/{named}/1 (a version)")
        if "/" in named or "@" in named:  # (not a logged model's `m-` id)
            # MLflow's own resolution: a version, an alias, `latest` or a stage, through this explicit client
            name, version = get_model_name_and_version(client, model_uri)
            source = client.get_model_version(name, version).source
        if source.startswith("models:/m-"):  # MLflow 3: a version's source is its logged model
            source = client.get_logged_model(source[len("models:/"):].rstrip("/")).artifact_location
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking_uri))


def _run_model_source(client, model_uri: str) -> str:
    """Where `runs:/RUN_ID/PATH` lives, found in the store of `client`: the run's logged model named PATH (MLflow 3
    logs models apart from the run's artifacts), else PATH under the run's artifacts. (MLflow resolves `runs:/`
    only in the process-wide store: the current folder's default one, which it creates.)"""
    run_id, _, path = model_uri[len("runs:/"):].partition("/")
    run = client.get_run(run_id)
    path = path.strip("/")
    for logged in client.search_logged_models(experiment_ids=[run.info.experiment_id]):
        if logged.source_run_id == run_id and logged.name == path:
            return logged.artifact_location
    return f"{run.info.artifact_uri.rstrip('/')}/{path}" if path else run.info.artifact_uri


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0][:300] if str(err) else type(err).__name__


def registered_version(model_uri: str, tracking_uri: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(name, version) a `models:/NAME@ALIAS` or `models:/NAME/VERSION` URI resolves to in the store `tracking_uri`
    (what `predict` records of the model it used); (None, None) without a store given (MLflow would create its
    default one in the current folder), for a store not there, or when it cannot be resolved."""
    named = model_uri[len("models:/"):].strip("/") if model_uri.startswith("models:/") else ""
    if not tracking_uri or ("/" not in named and "@" not in named):  # (a logged model's `m-` id: no version)
        return None, None
    try:
        _check_store(model_uri, tracking_uri)
        import mlflow
        from mlflow.store.artifact.utils.models import get_model_name_and_version

        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        name, version = get_model_name_and_version(client, model_uri)
        return str(name), str(version)
    except Exception:  # noqa: BLE001 - a record of the model, not a reason to fail the job that just loaded it
        return None, None

"""Model versions in the registry: making one, finding the one a run's weights already made, the alias holder.
A version is tagged with the digest of the files it was logged from, so a second registration of the same run and
weights (a rerun, a retry after a lost connection) gives that version back instead of a copy."""
from __future__ import annotations

import getpass
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from ..errors import UserError
from ..files import replace_text, sha256_file


ARTIFACTS_TAG = "artifacts_sha256"
"""Model version tag: the digest of the files the version was logged from (`artifacts_digest`)."""


EXPORT_RECORD = "export.json"
"""Run-folder file written at export: the export's digest and each file's, what `register` checks it against."""
EXPORT_TAG = "export.artifacts_sha256"
"""Run tag written at export: the export's `artifacts_digest` ({"export": <export folder>})."""


def _file_digests(root: Path) -> Dict[str, str]:
    """{path relative to `root` (its name for a file): SHA-256} of every file under `root`, sorted."""
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    return {str(p.relative_to(root) if root.is_dir() else p.name): sha256_file(p) for p in files}


def artifacts_digest(artifacts: Dict[str, str]) -> str:
    """SHA-256 over a model package's artifact files (name, relative path and content digest of each file, folders
    walked in sorted order): what makes two registrations of one run the same model."""
    return _digest_of({name: _file_digests(Path(where)) for name, where in artifacts.items()})


def _digest_of(files: Dict[str, Dict[str, str]]) -> str:
    """`artifacts_digest` from the file digests already taken ({artifact name: `_file_digests`})."""
    lines = [f"{name}/{rel} {digest}" for name, digests in sorted(files.items()) for rel, digest in digests.items()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def record_export(logger, run_dir: Path, export_dir: Path) -> None:
    """At export (rank 0): write `<run_dir>/export.json` (the export's digest and its files', whole or not at all:
    `register` reads it) and tag the run with the digest, so a registration of files changed or replaced since is
    refused (`check_export_unchanged`)."""
    files = _file_digests(Path(export_dir))  # each file read once
    digest = _digest_of({"export": files})
    replace_text(Path(run_dir) / EXPORT_RECORD, json.dumps({EXPORT_TAG: digest, "files": files}, indent=2))
    logger.set_tags({EXPORT_TAG: digest})


def recorded_export(run_dir: Path) -> Dict[str, Any]:
    """The folder's `export.json` (`record_export`): {EXPORT_TAG: digest, "files": {...}}; {} when absent or
    unreadable."""
    path = Path(run_dir) / EXPORT_RECORD
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def check_export_unchanged(run, export_dir: Path, run_dir: Optional[Path]) -> None:
    """Refuse (`UserError`, naming the files) to register `export_dir` for `run` when its files are not the ones
    the run exported: its digest tag (or its folder's `export.json`) records them. A run exported before these
    were recorded has nothing to compare and passes."""
    record = recorded_export(run_dir) if run_dir is not None else {}
    expected = run.data.tags.get(EXPORT_TAG) or record.get(EXPORT_TAG)
    if not expected:
        return
    now = _file_digests(Path(export_dir))  # each file read once
    if _digest_of({"export": now}) == expected:
        return
    trained = record.get("files") if record.get(EXPORT_TAG) == expected else None
    if trained:
        changed = sorted(f for f in set(now) | set(trained) if now.get(f) != trained.get(f))
        what = "changed since the run exported it: " + ", ".join(
            f"{f} ({'added' if f not in trained else 'removed' if f not in now else 'other content'})"
            for f in changed[:10])
    else:
        what = f"changed since the run exported it (digest {expected[:12]} at export, now a different one)"
    raise UserError(
        f"export {export_dir} of run {run.info.run_id}: {what}; registering it would give other weights this "
        f"run's metrics, lineage and model card. Put the run's own export back, or register the run these files "
        f"came from")


NOT_THERE = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
"""How MLflow says a registered model, an alias or a run is not there (an alias: INVALID_PARAMETER_VALUE)."""


def registered_before(client, name: str, run_id: str, digest: str) -> Optional[str]:
    """The version of `name` registered from `run_id` with artifacts of `digest`, if any (None for a new name).
    A name with a quote is quoted with the other kind (`name='it's'` broke the search, taken for "nothing before",
    so each rerun made a copy); one with both kinds is compared here, after a search by run only."""
    from mlflow.exceptions import MlflowException

    both = "'" in name and '"' in name
    quoted = f'"{name}"' if "'" in name else f"'{name}'"
    try:
        query = f"run_id='{run_id}'" if both else f"name={quoted} and run_id='{run_id}'"
        versions = client.search_model_versions(query)
    except MlflowException as err:  # a name not registered yet: nothing before
        # any other failure (a server error) raises: read as "nothing before", the rerun registered a copy
        if err.error_code not in NOT_THERE:
            raise
        return None
    same = [mv for mv in versions if (not both or mv.name == name) and (mv.tags or {}).get(ARTIFACTS_TAG) == digest]
    return str(min(int(mv.version) for mv in same)) if same else None


def new_version(client, name: str, model_uri: str, run_id: str, model_id: Optional[str],
                tags: Optional[Dict[str, str]] = None, description: Optional[str] = None) -> str:
    """Register `model_uri` as a new version of `name` in `client`'s registry (created on first use; a second job
    creating it at the same moment is fine), with its `tags` and `description` in the same call; returns the
    version number."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return str(client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags,
                                           description=description, model_id=model_id).version)


@contextmanager
def alias_turn(tracking_uri: str, name: str) -> Iterator[None]:
    """One job at a time reads `name`'s alias holder, compares and moves the alias: an exclusive `flock` (waited
    for; the kernel frees it when its holder dies). Two registrations that both read the holder before either
    moved the alias left it with the slower one, whatever its score. The lock file sits beside a SQLite store
    (jobs on any host sharing its folder); for a server it is in a per-user folder of this host's temporary folder
    (`user_lock_folder`), so only one user's jobs on one host take turns (MLflow's registry has no
    compare-and-set): another user's, or another host's, registration to the same server is not serialised."""
    from filelock import FileLock

    from .server import absolute_sqlite_uri, sqlite_store

    store = sqlite_store(tracking_uri or "")
    key = hashlib.sha256(f"{absolute_sqlite_uri(tracking_uri or '')}|{name}".encode()).hexdigest()[:16]
    folder = store.resolve().parent if store is not None and str(store) != ":memory:" else user_lock_folder()
    with FileLock(str(folder / f".mmlnb-alias-{key}.lock")):
        yield


def user_lock_folder() -> Path:
    """This OS user's folder (0700) in the temporary folder: a lock file made in the shared one (mode 0644) would
    refuse another user's job the same lock (PermissionError)."""
    user = str(os.getuid()) if hasattr(os, "getuid") else getpass.getuser()
    folder = Path(tempfile.gettempdir()) / f"mmlnb-dist-{user}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def alias_holder(client, name: str, alias: str):
    """The version holding `alias` and its run (None, None: no holder; the run None when it was deleted for good).
    Any other failure (a server error, a lost connection) raises: read as "no holder", it moved the alias to a
    version whatever its score."""
    from mlflow.exceptions import MlflowException

    try:
        holder = client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code not in NOT_THERE:
            raise
        return None, None
    try:
        return holder, client.get_run(holder.run_id) if holder.run_id else None
    except MlflowException as err:
        if err.error_code not in NOT_THERE:
            raise
        return holder, None

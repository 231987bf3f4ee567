"""Model versions in the registry: making one, finding the one a run's weights already made, the alias holder.
A version is tagged with the digest of the files it was logged from, so a second registration of the same run and
weights (a rerun, a retry after a lost connection) gives that version back instead of a copy."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Optional

from ..files import sha256_file


ARTIFACTS_TAG = "artifacts_sha256"
"""Model version tag: the digest of the files the version was logged from (`artifacts_digest`)."""


def artifacts_digest(artifacts: Dict[str, str]) -> str:
    """SHA-256 over a model package's artifact files (name, relative path and content digest of each file, folders
    walked in sorted order): what makes two registrations of one run the same model."""
    lines = []
    for name, where in sorted(artifacts.items()):
        root = Path(where)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        lines += [f"{name}/{p.relative_to(root) if root.is_dir() else p.name} {sha256_file(p)}" for p in files]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def registered_before(client, name: str, run_id: str, digest: str) -> Optional[str]:
    """The version of `name` registered from `run_id` with artifacts of `digest`, if any (None for a new name)."""
    try:
        versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except Exception:  # noqa: BLE001 - a name not registered yet: nothing before
        return None
    same = [mv for mv in versions if (mv.tags or {}).get(ARTIFACTS_TAG) == digest]
    return str(min(int(mv.version) for mv in same)) if same else None


def new_version(client, name: str, model_uri: str, run_id: str, model_id: Optional[str]) -> str:
    """Register `model_uri` as a new version of `name` in `client`'s registry (created on first use; a second job
    creating it at the same moment is fine); returns the version number."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return str(client.create_model_version(name, source=model_uri, run_id=run_id, model_id=model_id).version)


def alias_holder(client, name: str, alias: str):
    """The version holding `alias` and its run (None, None: no holder; the run None when it was deleted)."""
    try:
        holder = client.get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001 - no holder yet
        return None, None
    try:
        return holder, client.get_run(holder.run_id) if holder.run_id else None
    except Exception:  # noqa: BLE001 - the holder's run was deleted
        return holder, None

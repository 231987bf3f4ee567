"""What made an output, and refusing to continue it with something else.

Every resumable output records the settings that decide its content: a training run its resolved config, a
`describe` output its model, adapter digest, prompt, generation settings and input manifest digest, a shard build
its options and inputs, a feature cache its encoder. Continuing it with different settings would mix two results
under one name, so `check_or_record` compares the recorded settings with the new ones and refuses on any
difference outside an allowlist, naming every key that differs and how to start over instead.

Records are flat-or-nested JSON-able dicts; keys are compared as dotted paths (`train.lr`, `generation.top_p`).
"""
from __future__ import annotations

import fnmatch
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from .errors import UserError
from .files import replace_text

Change = Tuple[str, Any, Any]
"""(dotted key, recorded value, new value); a missing side is `MISSING`."""

MISSING = "<absent>"


class ProvenanceError(UserError):
    """An output exists and was made by different settings."""


def flatten(record: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[Change]:
    """Every dotted key whose value differs (or exists on one side only), sorted by key."""
    a, b = flatten(old), flatten(new)
    return [(k, a.get(k, MISSING), b.get(k, MISSING)) for k in sorted(set(a) | set(b))
            if a.get(k, MISSING) != b.get(k, MISSING)]


def allowed(key: str, allow: Sequence[str]) -> bool:
    """`allow` holds dotted keys or fnmatch patterns (`tracking.*`)."""
    return any(key == pattern or fnmatch.fnmatchcase(key, pattern) for pattern in allow)


def format_changes(changes: Sequence[Change]) -> str:
    return "\n".join(f"  {key}: {old!r} -> {new!r}" for key, old, new in changes)


def read_record(path: Path) -> Dict[str, Any]:
    return json.loads(Path(path).read_text())


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    replace_text(path, json.dumps(record, indent=2, sort_keys=True, default=str))


def refuse_changes(what: str, old: Mapping[str, Any], new: Mapping[str, Any], *, allow: Sequence[str] = (),
                   remedy: str = "") -> List[Change]:
    """Raise `ProvenanceError` listing the differences outside `allow`; return the allowed ones."""
    changes = differences(old, new)
    blocking = [c for c in changes if not allowed(c[0], allow)]
    if blocking:
        raise ProvenanceError(f"{what} was made with different settings; continuing it would mix two results:\n"
                              f"{format_changes(blocking)}\n{remedy}".rstrip())
    return [c for c in changes if allowed(c[0], allow)]


def check_or_record(path: Path, record: Mapping[str, Any], *, what: str, allow: Sequence[str] = (),
                    remedy: str = "") -> List[Change]:
    """First use: write `record` to `path`. Later uses: refuse if it differs outside `allow` (see
    `refuse_changes`); allowed changes are appended to the record's `changes` history and returned."""
    path = Path(path)
    if not path.is_file():
        write_record(path, {"record": dict(record), "changes": []})
        return []
    try:
        stored = read_record(path)
        if not (isinstance(stored, dict) and isinstance(stored.get("record"), dict)):
            raise ValueError("no 'record' mapping in it")
    except (OSError, ValueError) as err:  # (JSONDecodeError is a ValueError)
        raise ProvenanceError(f"{path} (the record of what made {what}) is damaged ({type(err).__name__}: "
                              f"{str(err)[:200] or 'empty'}), so the settings it was made with cannot be compared: "
                              f"write a new output (another output folder), or, only if you know {what} was made "
                              f"with these settings, delete {path} to record them anew") from None
    changes = refuse_changes(what, stored["record"], record, allow=allow, remedy=remedy)
    if changes:
        history = list(stored.get("changes", []))
        history.append({"time": time.time(), "changed": {k: [o, n] for k, o, n in changes}})
        write_record(path, {"record": dict(record), "changes": history})
    return changes

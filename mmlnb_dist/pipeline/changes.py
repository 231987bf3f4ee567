"""What changed between two runs of a stage: its record keeps what its fingerprint covers, by name
(`stage_settings`), so that a rebuild says which settings or inputs changed (`changed_settings`), in the log and
in the report, instead of "its inputs or settings changed"."""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

from ..core.config import flatten_dict

SETTINGS = "settings"
"""The stage record's fingerprinted settings (dotted key: value) and inputs ("<input> changed": fingerprint)."""

CHANGED = " changed"


def stage_settings(settings: Dict[str, Any], inputs: Dict[str, Any]) -> Dict[str, Any]:
    """`settings` (nested sections: dotted keys) and `inputs` (name: fingerprint) as a stage record keeps them."""
    flat = {key: json.loads(json.dumps(value, default=str)) for key, value in flatten_dict(settings).items()}
    return {**{f"{name}{CHANGED}": value for name, value in inputs.items()}, **flat}


def changed_settings(before: Any, now: Optional[Dict[str, Any]], most: int = 3) -> Optional[str]:
    """What differs between two `stage_settings` ("train.lr 0.001 -> 0.0003; shards changed"), `most` names at
    most; None when either is not known (a record written before they were kept) or nothing differs in them."""
    if not isinstance(before, dict) or not now:
        return None
    # a setting only `before` has is one the fingerprint no longer covers (a record made before the train stage
    # left its cadence settings out): no change of the user's, so not named; an input gone (a local folder
    # deleted) is
    keys = sorted(k for k in before.keys() | now.keys()
                  if before.get(k, ...) != now.get(k, ...) and (k in now or k.endswith(CHANGED)))

    def show(key: str, value: Any) -> str:
        return "(unset)" if value is ... else json.dumps(value)[:40] if not isinstance(value, str) else value[:40]

    names = [k if k.endswith(CHANGED) else f"{k} {show(k, before.get(k, ...))} -> {show(k, now.get(k, ...))}"
             for k in keys]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return "; ".join(names[:most]) + more if names else None

"""What `mmlnb-dist config explain` prints: one line per setting of a root config model, with its value, the
default beside it where they differ, and the field's documentation (its attribute docstring).

Apart from `core.config` (which stays under its size budget) because nothing there needs it."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Type

from .config import S, _list_item, _section_type, field_annotation
from .errors import ConfigError

_NONE = object()
"""No default to show: a list entry the default list does not have."""


def explain(root: Type[S], cfg: Optional[S] = None, keys: Sequence[str] = ()) -> List[str]:
    """One line per field of `root`: dotted key, value, docstring. The value is `cfg`'s, followed by the default
    where they differ (the defaults alone when `cfg` is None), written as JSON, as a YAML file or an override would
    spell it. `keys` keeps only those keys and sections, a list entry by its index (`fusion.curriculum.phases.1`:
    its fields); an unknown key raises, with a suggestion, and so does an index past the list's end."""
    for key in keys:
        field_annotation(root, key)
    defaults = root().model_dump(mode="json")
    values = cfg.model_dump(mode="json") if cfg is not None else defaults

    def named(key: str) -> bool:  # the key, or a section (or list entry) above it, was asked for
        return not keys or any(key == k or key.startswith(k + ".") for k in keys)

    def below(key: str) -> bool:  # something inside the key was asked for
        return any(k.startswith(key + ".") for k in keys)

    def line(key: str, value: Any, default: Any, doc: Optional[str]) -> str:
        shown = json.dumps(value)
        if default is not _NONE and json.dumps(default) != shown:
            shown += f"  (default {json.dumps(default)})"
        return f"{key} = {shown}  # {doc or ''}"

    def entries(key: str, item: Any, value: List[Any], default: Any, doc: Optional[str]) -> List[str]:
        """The entries of the list `key` that a key names by index."""
        out = []
        asked = sorted({int(k[len(key) + 1:].split(".")[0]) for k in keys if k.startswith(key + ".")})
        for index in asked:
            if index >= len(value):
                held = f"{len(value)} entries (0-{len(value) - 1})" if value else "no entries"
                raise ConfigError(f"config key '{key}.{index}': '{key}' has {held}; index {index} is out of range")
            fallback = default[index] if isinstance(default, list) and index < len(default) else _NONE
            sub = _section_type(item)
            if sub is not None:
                out.extend(walk(sub, f"{key}.{index}.", value[index], fallback if fallback is not _NONE else {}))
            else:
                out.append(line(f"{key}.{index}", value[index], fallback, doc))
        return out

    def walk(model: type, prefix: str, value: Dict[str, Any], default: Dict[str, Any]) -> List[str]:
        lines = []
        for name, field in model.model_fields.items():
            key = prefix + name
            sub, item = _section_type(field.annotation), _list_item(field.annotation)
            if sub is not None:
                if named(key):
                    lines.append(f"{key}:  # {field.description or ''}")
                if named(key) or below(key):
                    lines.extend(walk(sub, key + ".", value[name], default.get(name, {})))
                continue
            if named(key):
                lines.append(line(key, value[name], default.get(name, _NONE), field.description))
            if item is not None and below(key):
                lines.extend(entries(key, item, value[name], default.get(name, _NONE), field.description))
        return lines

    return walk(root, "", values, defaults)

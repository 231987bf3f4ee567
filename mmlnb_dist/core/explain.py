"""What `mmlnb-dist config explain` prints: one line per setting of a root config model, with its value, the
default beside it where they differ, where the value was set (the YAML file, an override; nothing: the default or
what the config derived from other keys) and the field's documentation (its attribute docstring).

Apart from `core.config` (which stays under its size budget) because nothing there needs it."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Type

from .config import S, _list_item, _section_type, field_annotation
from .errors import ConfigError

_NONE = object()
"""No default to show: a list entry the default list does not have."""


class Origin:
    """Where a loaded config's values came from: `raw`, the YAML file's mapping as read (named `file`), then
    `overrides` (`KEY=VALUE`, applied in order). A value two users read alike (`train.lr = 0.001`) may come from
    the profile or from a forgotten override in a launch script; `source` tells which."""

    def __init__(self, file: Optional[str], raw: Optional[Mapping[str, Any]], overrides: Sequence[str] = ()):
        self.file, self.raw = file, raw or {}
        self.override_keys = [o.split("=", 1)[0].strip() for o in overrides if "=" in o]

    def source(self, key: str) -> Optional[str]:
        """`override` (the key or a section or list above it was overridden), `override of K` (only K, an entry
        or a key inside it), `FILE` (set in the YAML file), or None (the default, or derived from other keys)."""
        for given in reversed(self.override_keys):  # the last one wins, as when they were applied
            if key == given or key.startswith(given + "."):
                return "override"
        inside = [given for given in self.override_keys if given.startswith(key + ".")]
        if inside:
            return f"override of {', '.join(dict.fromkeys(inside))}"
        node: Any = self.raw
        for part in key.split("."):  # through the file's mappings and, by index, its lists
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return self.file


def explain(root: Type[S], cfg: Optional[S] = None, keys: Sequence[str] = (),
            origin: Optional[Origin] = None) -> List[str]:
    """One line per field of `root`: dotted key, value, docstring. The value is `cfg`'s, followed by the default
    where they differ (the defaults alone when `cfg` is None), written as JSON, as a YAML file or an override would
    spell it, and by where it was set when `origin` tells (`(default 0.0001; from cpu-demo)`, `(from override)`).
    `keys` keeps only those keys and sections, a list entry by its index (`fusion.curriculum.phases.1`: its
    fields); an unknown key raises, with a suggestion, and so does an index past the list's end."""
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
        notes = [f"default {json.dumps(default)}"] if default is not _NONE and json.dumps(default) != shown else []
        source = origin.source(key) if origin is not None else None
        if source is not None:
            notes.append(f"from {source}")
        if notes:
            shown += f"  ({'; '.join(notes)})"
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
